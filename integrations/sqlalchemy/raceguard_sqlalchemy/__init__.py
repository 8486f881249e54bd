"""raceguard for SQLAlchemy and Alembic.

- Alembic operations (op.create_raceguard_extension(),
  op.add_lock_version_guard(...), ...), guards declared on a Table for
  autogenerate, and process_revision_directives for projects that also
  use alembic_utils: raceguard_sqlalchemy.alembic_ops, registered on import.
- map_errors(engine): a guard's 40001 as StaleDataError, its 23514 as
  GuardViolation.
- lease() / complete() / release() / extend(): leases over a select.
"""
from .errors import UNKNOWN_STATE, GuardViolation, StaleDataError, map_errors
from .guards import (ImmutableOnceSetGuard, LockVersionGuard, RunningBalanceGuard, TransitionGuard, declared_guards,
                     immutable_once_set_guard, lock_version_guard, running_balance_guard, transition_guard)
from .leases import Lease, complete, extend, lease, release

try:
    import alembic  # noqa: F401
except ImportError:  # the operations need Alembic; the rest does not
    process_revision_directives = None
else:
    from .alembic_ops import process_revision_directives  # registers the operations

__version__ = "0.1.0"

__all__ = [
    "GuardViolation", "StaleDataError", "map_errors", "UNKNOWN_STATE",
    "LockVersionGuard", "ImmutableOnceSetGuard", "RunningBalanceGuard", "TransitionGuard",
    "lock_version_guard", "immutable_once_set_guard", "running_balance_guard", "transition_guard", "declared_guards",
    "Lease", "lease", "complete", "release", "extend", "process_revision_directives",
]
