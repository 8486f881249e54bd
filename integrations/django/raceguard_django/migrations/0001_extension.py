from django.db import migrations

from raceguard_django.operations import CreateRaceguardExtension


class Migration(migrations.Migration):
    """CREATE EXTENSION IF NOT EXISTS raceguard (a no-op where it is installed,
    as in a database copied from a template that holds it). Guards that
    django-pgtrigger generates depend on this migration."""

    initial = True
    dependencies = []
    operations = [CreateRaceguardExtension()]
