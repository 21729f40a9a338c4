"""orchestra plugin for the OpenAI Codex CLI: the tool adapter named ``codex``.

``available`` finds the ``codex`` program and its version. Running codex on a task
arrives in a later release.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import orchestra

PROGRAM = "codex"


class CodexAdapter:
    """The ``codex`` tool: OpenAI's coding agent, run as ``codex exec``."""

    name = "codex"
    capabilities = frozenset({"prompt", "edit", "python", "javascript", "typescript"})

    def available(self, profile: orchestra.ToolProfile) -> orchestra.Availability:
        """Return whether codex runs here, with its version and path.

        The program is ``codex`` on PATH, or the path or name set as ``binary`` in
        ``[tools.codex]``. Even ``codex --version`` writes into ``$CODEX_HOME/tmp``
        (``~/.codex`` when unset), so it runs with orchestra's own CODEX_HOME and never
        touches the user's.
        """
        program = profile.options.get("binary", PROGRAM)
        if not isinstance(program, str) or not program:
            return orchestra.Availability(
                False, reason=f"[tools.{profile.name}] binary must be a program name or path"
            )
        program = os.path.expanduser(program)
        path = shutil.which(program)
        if path is None:  # checked first, so that a machine without codex gets no CODEX_HOME
            where = "" if os.sep in program else " on PATH"
            return orchestra.Availability(False, reason=f"{program} not found{where}")
        env = {**os.environ, "CODEX_HOME": str(codex_home())}
        return orchestra.find_version(path, env=env)

    def execute(
        self, request: orchestra.ExecutionRequest, ctx: orchestra.ExecutionContext
    ) -> orchestra.StepResult:
        """Raise NotImplementedError: running codex on a task arrives in a later issue."""
        raise NotImplementedError("running codex arrives in a later issue")


def codex_home() -> Path:
    """Return orchestra's private CODEX_HOME, creating it (mode 0700) when missing.

    It lives in the user's cache directory, ``$XDG_CACHE_HOME/orchestra/codex-home`` or
    ``~/.cache/orchestra/codex-home``, and deliberately not under /tmp: codex refuses to
    create its helper programs (apply_patch …) under a temporary directory.
    """
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache):  # the XDG spec says to ignore a relative path
        cache = os.path.join(os.path.expanduser("~"), ".cache")
    home = Path(cache, "orchestra", "codex-home")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


@orchestra.hookimpl
def orchestra_register_tools(register: Callable[[orchestra.ToolAdapter], None]) -> None:
    """Register the ``codex`` adapter."""
    register(CodexAdapter())
