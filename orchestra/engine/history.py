"""What each task's earlier attempts leave for its next: the failure to fix, the tool, and
what the loop breaker compares.

The run loop adds each attempt as its end is recorded; a resumed run reads its attempts
back from the store first, so a retry after a resume is told what it would have been told
without one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from orchestra.engine.failover import AttemptEnd
from orchestra.engine.resilience import change_digest, continues_after, fingerprint

if TYPE_CHECKING:
    from orchestra.models import StepResult
    from orchestra.store.records import AttemptRecord

#: failures the loop breaker counts: the tool did its work and it came out wrong the same
#: way. Transient failures (rate limits, timeouts, provider errors) repeat by nature.
LOOP_CLASSES = frozenset(
    {"check_failed", "invalid_output", "scope_violation", "context_overflow", "merge_conflict"}
)


def loop_fingerprint(result: StepResult) -> str | None:
    """The digest the loop breaker compares of a failure it counts, else None."""
    return fingerprint(result) if result.error_class in LOOP_CLASSES else None


class TaskHistory:
    """Per task: what its last attempt said and which tool made it, the fingerprints of
    its attempts' failures (None where none counts) and a digest of each attempt's change
    (None when it changed nothing)."""

    def __init__(self) -> None:
        #: what the next attempt is told to fix
        self.feedback: dict[str, str | None] = {}
        #: the error class of the last attempt (a retry after a failed check goes on
        #: from that attempt's change)
        self.last_error: dict[str, str | None] = {}
        self.last_tool: dict[str, str] = {}
        self.failures: dict[str, list[str | None]] = {}
        self.changes: dict[str, list[str | None]] = {}
        #: each attempt's tool and how it failed, what the policy table reads
        self.ends: dict[str, list[AttemptEnd]] = {}

    def load(self, attempts: Iterable[AttemptRecord]) -> None:
        """Take in a resumed run's recorded attempts, oldest first."""
        for attempt in attempts:
            self._add(
                attempt.task_id,
                attempt.tool,
                attempt.feedback,
                attempt.error_class,
                attempt.fingerprint,
                change_digest(attempt.diff),
                attempt.retry_after,
            )

    def add(self, task_id: str, tool: str, result: StepResult, digest: str | None) -> None:
        """Take in an attempt that just ended (``digest``: its ``loop_fingerprint``)."""
        self._add(
            task_id,
            tool,
            result.feedback,
            result.error_class,
            digest,
            change_digest(result.diff),
            result.retry_after,
        )

    def _add(
        self,
        task_id: str,
        tool: str,
        feedback: str | None,
        error_class: str | None,
        digest: str | None,
        change: str | None,
        retry_after: float | None,
    ) -> None:
        self.feedback[task_id] = feedback
        self.last_error[task_id] = error_class
        self.last_tool[task_id] = tool
        self.failures.setdefault(task_id, []).append(digest)
        self.changes.setdefault(task_id, []).append(change)
        self.ends.setdefault(task_id, []).append(AttemptEnd(tool, error_class, retry_after))

    def continues(self, task_id: str) -> bool:
        """Whether the task's next attempt goes on from its last one's change."""
        return continues_after(self.last_error.get(task_id))
