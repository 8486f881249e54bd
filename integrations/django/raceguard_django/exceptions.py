"""The exceptions raceguard_django raises."""
from django.db.utils import OperationalError


class StaleObjectError(OperationalError):
    """A save from a stale instance: another writer changed the row since it
    was read (a version guard's 40001, or the version no longer matching the
    UPDATE's WHERE). Re-read the object and retry.

    A subclass of django.db.OperationalError, so code that already catches a
    serialization failure as OperationalError keeps working."""

    def __init__(self, message, model=None, pk=None, version=None):
        super().__init__(message)
        self.model = model
        self.pk = pk
        self.version = version


class GuardDeclarationError(ValueError):
    """A guard operation or trigger class declared with an unknown field, a
    bad option or a name PostgreSQL would truncate."""


class NotInTransactionError(RuntimeError):
    """claim() called outside transaction.atomic(): its row locks would end
    with the statement, so nothing would be claimed."""
