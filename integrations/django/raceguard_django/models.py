"""An abstract model whose save() and delete() raise Django's own errors for
raceguard's: StaleObjectError and ValidationError on the guarded field."""
from django.db import models

from .errors import map_errors


class GuardedModel(models.Model):
    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        with map_errors(kwargs.get("using") or self._state.db or "default", type(self)):
            return super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        with map_errors(kwargs.get("using") or self._state.db or "default", type(self)):
            return super().delete(*args, **kwargs)
