"""A version field that stays current after its own save.

Django has no optimistic locking of its own and saves every field, so an
instance that echoes the version it read is stale after its own save. This
field pre-bumps instead: a save sends version + 1 and puts the version it
read in the UPDATE's WHERE, which raceguard.lock_version() accepts (the
client bumped the version it read: n = o + 1) in its default and its strict
mode, and the instance holds the stored version afterwards, so it can be
saved again without refresh_from_db(). A save from a stale instance matches
no row (or meets the guard's 40001) and raises StaleObjectError.
"""
from django.db import models

from .exceptions import StaleObjectError
from . import errors


class VersionField(models.IntegerField):
    """An integer version column, 1 for a new row; pair it with
    AddLockVersionGuard (or the pgtrigger LockVersion) on the same field."""

    description = "Optimistic-locking version (raceguard.lock_version)"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default", 1)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("default") == 1:
            del kwargs["default"]
        return name, "raceguard_django.VersionField", args, kwargs

    def pre_save(self, model_instance, add):
        value = super().pre_save(model_instance, add)
        if add and value is None:
            # The guard stores NULL as 1: hold what will be stored.
            value = 1
            setattr(model_instance, self.attname, value)
        return value

    def contribute_to_class(self, cls, name, **kwargs):
        super().contribute_to_class(cls, name, **kwargs)
        if not cls._meta.abstract and not getattr(cls._do_update, "raceguard_versioned", False):
            cls._do_update = _versioned_do_update(cls._do_update)


def version_field(model, local=False):
    """The model's VersionField; with local=True only one stored in the
    model's own table (not a multi-table parent's)."""
    fields = model._meta.local_concrete_fields if local else model._meta.concrete_fields
    for field in fields:
        if isinstance(field, VersionField):
            return field
    return None


def _versioned_do_update(original):
    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update, *args, **kwargs):
        # base_qs is the table being written: with multi-table inheritance,
        # each parent's table, then the model's own.
        field = version_field(base_qs.model, local=True)
        if field is None:
            return original(self, base_qs, using, pk_val, values, update_fields, forced_update, *args, **kwargs)
        read = getattr(self, field.attname)
        bumped = (read or 0) + 1
        # The version is always written, also with update_fields: a save
        # that leaves it out would be a blind write.
        values = [entry for entry in values if entry[0] is not field] + [(field, None, bumped)]
        if read is None:
            checked = base_qs.filter(pk=pk_val, **{field.attname + "__isnull": True})
        else:
            checked = base_qs.filter(pk=pk_val, **{field.attname: read})
        with errors.map_errors(using, type(self)):
            updated = checked._update(values) > 0
        if updated:
            setattr(self, field.attname, bumped)
            return True
        if self._state.adding or not base_qs.filter(pk=pk_val).exists():
            # No such row: Django's usual path (an INSERT, or its error).
            return False
        raise StaleObjectError(
            "%s %r was changed by another writer: version %r is no longer current; re-read it and retry"
            % (type(self)._meta.label, pk_val, read),
            model=type(self),
            pk=pk_val,
            version=read,
        )

    _do_update.raceguard_versioned = True
    return _do_update
