"""The SQLite store of runs, steps, attempts, events and breakers.

``Store.open(path)`` opens (and creates or upgrades) the database; see ``database.py`` for
what it promises about transactions, threads and secrets and for the modules ``Store`` is
made of, ``lifecycle.py`` for the states a run and a step move through, ``migrations.py``
for the schema, and ``lock.py`` for how two orchestrators are kept off the same run.
"""

from orchestra.store.database import Store
from orchestra.store.errors import RunLocked, SchemaTooNew, StoreError, UnknownRun
from orchestra.store.records import (
    AttemptRecord,
    BreakerRecord,
    EventRecord,
    ReviewRecord,
    RunRecord,
    StepRecord,
)

__all__ = [
    "AttemptRecord",
    "BreakerRecord",
    "EventRecord",
    "ReviewRecord",
    "RunLocked",
    "RunRecord",
    "SchemaTooNew",
    "StepRecord",
    "Store",
    "StoreError",
    "UnknownRun",
]
