from django.apps import AppConfig


class RaceguardConfig(AppConfig):
    """Add "raceguard_django" to INSTALLED_APPS for `manage.py raceguard`,
    the migration that creates the extension, and the django-pgtrigger
    hooks (when pgtrigger is installed)."""

    name = "raceguard_django"
    label = "raceguard_django"
    verbose_name = "raceguard"

    def ready(self):
        try:
            import pgtrigger  # noqa: F401
        except ImportError:
            return
        from .triggers import install_hooks

        install_hooks()
