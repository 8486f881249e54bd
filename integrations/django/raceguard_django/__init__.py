"""raceguard for Django: guards declared in migrations (or in Meta.triggers
with django-pgtrigger), a version field that stays current after its own
save, Django's own errors for raceguard's, and leases over QuerySets."""
from .exceptions import GuardDeclarationError, NotInTransactionError, StaleObjectError

__version__ = "0.1.0"

__all__ = [
    "GuardDeclarationError",
    "NotInTransactionError",
    "StaleObjectError",
    "VersionField",
    "GuardedModel",
    "map_errors",
    "lease",
    "complete",
    "release",
    "extend",
    "claim",
]


def __getattr__(name):
    # Imported lazily: these need Django's settings (and the app registry).
    if name == "VersionField":
        from .fields import VersionField
        return VersionField
    if name == "GuardedModel":
        from .models import GuardedModel
        return GuardedModel
    if name == "map_errors":
        from .errors import map_errors
        return map_errors
    if name in ("lease", "complete", "release", "extend", "claim"):
        from . import leases
        return getattr(leases, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
