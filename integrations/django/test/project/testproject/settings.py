"""The test project's settings: the database comes from the environment
(test/run.sh creates the roles and the template)."""
import os

SECRET_KEY = "raceguard-django-test"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = ["raceguard_django", "shop"]
try:
    import pgtrigger  # noqa: F401  django-pgtrigger, where Debian has it
except ImportError:
    pass
else:
    INSTALLED_APPS += ["pgtrigger", "shop_pgtrigger"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["APP_DB"],
        "USER": os.environ["APP_USER"],
        "PASSWORD": os.environ.get("APP_PASSWORD", ""),
        "HOST": os.environ.get("PGHOST", ""),
        "PORT": os.environ.get("PGPORT", ""),
        # The test database is a copy of a template that holds raceguard,
        # so an application role with CREATEDB alone can make it.
        "TEST": {"NAME": os.environ.get("APP_TEST_DB"), "TEMPLATE": os.environ.get("APP_TEMPLATE") or None},
    }
}
