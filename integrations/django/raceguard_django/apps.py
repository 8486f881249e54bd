from django.apps import AppConfig


class RaceguardConfig(AppConfig):
    """Add "raceguard_django" to INSTALLED_APPS for `manage.py raceguard`."""

    name = "raceguard_django"
    label = "raceguard_django"
    verbose_name = "raceguard"
