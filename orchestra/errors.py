"""Errors a user can cause: each names the file, task and field it is about.

The CLI prints every ``OrchestraError`` as one line on stderr and exits 2 (a full disk:
75, see ``DiskFull``). Anything else that escapes is a bug and is allowed to show its
traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class OrchestraError(Exception):
    """A mistake in the user's input, configuration or environment."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        task: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.task = task
        self.field = field

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.task:
            where.append(f"task {self.task!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        return ": ".join([*where, self.message])

    def lines(self) -> list[str]:
        """The one-line messages this error prints as."""
        return [str(self)]


class SpecError(OrchestraError):
    """One thing wrong in a workstream file."""


class FileInvalid(OrchestraError):
    """A file with one or more problems, all reported together, one line each."""

    def __init__(self, file: str, errors: Sequence[OrchestraError]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} found", file=file)

    def lines(self) -> list[str]:
        return [str(error) for error in self.errors]


class WorkstreamInvalid(FileInvalid):
    """A workstream file with one or more problems."""


class ConfigError(OrchestraError):
    """A problem in orchestra.toml, [tool.orchestra] or an ORCHESTRA_* variable."""


class ConfigInvalid(FileInvalid):
    """A configuration file with one or more problems."""


class PluginError(OrchestraError):
    """A plugin that failed to load, registered something badly, or is unknown."""


class UnknownName(OrchestraError):
    """A name (tool, strategy, sink …) that no installed plugin registered."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or ''."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class WorkspaceError(OrchestraError):
    """A workspace could not be made ready for an attempt (a failed setup command …)."""


class WorkspaceViolation(OrchestraError):
    """An attempt reached beyond its workspace: it moved the run's branch or its
    worktree's HEAD, or changed the repository's configuration. The attempt fails with
    ``scope_violation``; the message says what was done and what orchestra put back."""


class DiskFull(OrchestraError):
    """A write that failed because the disk (or the user's quota) is full.

    ``run_id``, when the fault stopped a run, makes the message say how to go on once
    there is room. The CLI exits with ``exit_status``: sysexits' EX_TEMPFAIL, "try again
    later", so that a script can tell it from bad input (2) and a failed run (1).
    """

    exit_status = 75

    def __init__(self, message: str, *, file: str | None = None, run_id: str | None = None):
        super().__init__(message, file=file)
        self.run_id = run_id

    def __str__(self) -> str:
        if self.run_id:
            then = f"free some space, then run: orchestra resume {self.run_id}"
        else:
            then = "free some space and try again"
        return f"{super().__str__()}; {then}"
