"""An abstract model whose save() and delete() raise Django's own errors for
raceguard's: StaleObjectError and ValidationError on the guarded field."""
from django.db import models, router

from .errors import map_errors


class GuardedModel(models.Model):
    class Meta:
        abstract = True

    def _write_database(self, using):
        # The database Model.save() and delete() write to.
        return using or router.db_for_write(type(self), instance=self)

    def save(self, *args, **kwargs):
        with map_errors(self._write_database(kwargs.get("using")), type(self)):
            return super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        with map_errors(self._write_database(kwargs.get("using")), type(self)):
            return super().delete(*args, **kwargs)
