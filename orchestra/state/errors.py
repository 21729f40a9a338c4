"""What can go wrong with the run database that a user can cause or fix."""

from __future__ import annotations

from orchestra.errors import OrchestraError


class StoreError(OrchestraError):
    """A problem with the run database: unreadable, too new, or a run it lacks."""


class UnknownRun(StoreError):
    """A run id (or a task of a run) that the database does not hold."""


class SchemaTooNew(StoreError):
    """A database written by a newer orchestra, with migrations this one does not know."""


class RunLocked(StoreError):
    """A run that another orchestra process is driving right now."""
