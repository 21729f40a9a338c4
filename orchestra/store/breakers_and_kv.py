"""The tools' breakers and small values (tables ``breakers``, ``kv``): what outlasts a run.

A breaker is saved per tool, so the next run starts with what the last one learned; a
small value is any JSON under a key (the round-robin router's position, a workspace's
checkpoint). Neither belongs to a run, and neither writes an event.
"""

from __future__ import annotations

import json
import time
from typing import Any

from orchestra.store.json_text import to_json
from orchestra.store.records import BreakerRecord
from orchestra.store.transactions import Transactions


class BreakersAndValues(Transactions):
    """The saved breakers of the tools and the store's small values."""

    # -- breakers -----------------------------------------------------------------------

    def breaker(self, tool: str) -> BreakerRecord | None:
        """Return the saved breaker of ``tool``, or None if it has none."""
        rows = self._query("SELECT * FROM breakers WHERE tool = ?", (tool,))
        return BreakerRecord.from_row(rows[0]) if rows else None

    def breakers(self) -> list[BreakerRecord]:
        """Return every saved breaker, by tool name."""
        return [
            BreakerRecord.from_row(row)
            for row in self._query("SELECT * FROM breakers ORDER BY tool")
        ]

    def set_breaker(
        self,
        tool: str,
        state: str,
        *,
        failures: int,
        opened_at: float | None = None,
        last_error_class: str | None = None,
        open_until: float | None = None,
    ) -> None:
        """Save the breaker of ``tool`` (replacing what was saved)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO breakers (tool, state, failures, opened_at,"
                " last_error_class, updated_at, open_until) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tool, state, failures, opened_at, last_error_class, time.time(), open_until),
            )

    # -- small values -------------------------------------------------------------------

    def get_value(self, key: str, default: Any = None) -> Any:
        """Return the JSON value saved under ``key`` (the router's position …), or default."""
        rows = self._query("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set_value(self, key: str, value: Any) -> None:
        """Save a JSON-serialisable value under ``key``."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
                (key, to_json(value), time.time()),
            )
