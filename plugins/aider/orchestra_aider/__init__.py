"""orchestra plugin for aider (https://aider.chat): the tool adapter named ``aider``.

``available`` finds the ``aider`` program and its version. Running aider on a task
arrives in a later release.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import orchestra

PROGRAM = "aider"


class AiderAdapter:
    """The ``aider`` tool: an AI pair programmer that edits files and commits its edits."""

    name = "aider"
    capabilities = frozenset({"prompt", "edit", "python", "javascript", "typescript"})

    def available(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        """Return whether aider runs here, with its version and path.

        The program is ``aider`` on PATH, or the path or name set as ``binary`` in
        ``[tools.aider]``. ``aider --version`` writes nothing to HOME (checked by the
        tests), so it runs in the caller's environment.
        """
        program = profile.options.get("binary", PROGRAM)
        if not isinstance(program, str) or not program:
            return orchestra.Availability(
                False, reason=f"[tools.{profile.name}] binary must be a program name or path"
            )
        return orchestra.find_version(os.path.expanduser(program))

    def execute(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Raise NotImplementedError: running aider on a task arrives in a later issue."""
        raise NotImplementedError("running aider arrives in a later issue")


@orchestra.hookimpl
def orchestra_register_tools(register: Callable[[orchestra.ToolAdapter], None]) -> None:
    """Register the ``aider`` adapter."""
    register(AiderAdapter())
