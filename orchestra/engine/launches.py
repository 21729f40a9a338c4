"""What an attempt starts with: its environment and the secrets in it, its log file, the
request its tool is asked and the context its processes run through, in its sandbox.

The run loop records the attempt's start and then builds its ``AttemptLaunch`` here; the
worker that takes it needs nothing else. What holds for the whole run (a tool's base
environment, its state directory, the sandbox choice) is worked out once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestra.engine import sandbox
from orchestra.engine.context import LocalContext
from orchestra.engine.environment import build_environment
from orchestra.engine.messages import EventPosted
from orchestra.models import ExecutionRequest
from orchestra.plugin.protocols import AttemptLaunch
from orchestra.secrets import masked_command, redactor_for, secret_values

if TYPE_CHECKING:
    from orchestra.config import Project, Settings
    from orchestra.engine.messages import Message
    from orchestra.models import Check, Defaults, Task, ToolProfile
    from orchestra.plugin.host import PluginHost
    from orchestra.plugin.protocols import RunWorkspace


def _directory_alone(directory: str) -> list[str]:
    return [directory]


class LaunchBuilder:
    """Builds the launches of one run's attempts.

    ``profile(tool)`` is the tool's profile; ``post`` puts a message in the run loop's
    inbox (a tool's progress events); ``last_lines``, when given, gets each running task's
    last line of output (for sinks that show it)."""

    def __init__(
        self,
        *,
        run_id: str,
        host: PluginHost,
        defaults: Defaults,
        settings: Settings,
        project: Project,
        state_dir: str,
        log_root: Path,
        environ: Mapping[str, str],
        profile: Callable[[str], ToolProfile],
        post: Callable[[Message], None],
        cancel: Any,
        hurry: Any,
        last_lines: dict[str, str] | None,
    ) -> None:
        self.run_id = run_id
        self.tools = host.tools()
        self.defaults = defaults
        self.settings = settings
        #: the values of the settings plugins add, in every request
        self.plugin_settings = {
            registration.name: settings.values[registration.name].value
            for registration in host.settings()
            if registration.name in settings.values
        }
        self.project_root = str(project.root)
        self.state_dir = state_dir
        self.environ = environ
        self.profile = profile
        self.post = post
        self.cancel = cancel
        self.hurry = hurry
        self.last_lines = last_lines
        self._log_prefix = f"{log_root}{os.sep}"
        self._scratch_root = str(log_root / "scratch")
        self._base_env: dict[str, tuple[dict[str, str], list[str]]] = {}
        self._tool_dirs: dict[str, str] = {}
        self._shown: dict[str, str | None] = {}
        #: whether attempts run in a sandbox here (refused at once when one is required
        #: and this machine cannot give it), and the directories the setting adds to it
        self.sandboxing = sandbox.require(settings)
        self._sandbox_extra = [
            str(project.root / os.path.expanduser(path)) for path in settings.sandbox_writable
        ]

    def log_path(self, task_id: str, attempt: int) -> str:
        """The attempt's log file: one flat directory per run (a directory per task
        costs a mkdir per task)."""
        return f"{self._log_prefix}{task_id}.{attempt}.log"

    def environment(self, tool: str, task: Task, attempt: int) -> tuple[dict[str, str], list[str]]:
        """Return the attempt's environment and the values to redact: the secrets in it,
        and those of orchestra's own environment, which the attempt does not get but may
        find another way (a task that prints a ``.env`` file, a tool's own config)."""
        if tool not in self._base_env:
            profile = self.profile(tool)
            base = build_environment(
                self.environ, {**profile.env, **self.defaults.env}, profile.pass_env
            )
            self._base_env[tool] = (base, secret_values({**self.environ, **base}, profile.secrets))
        base, secrets = self._base_env[tool]
        env = {**base, **task.env} if task.env else dict(base)
        if task.env:
            secrets = secret_values({**self.environ, **env}, self.profile(tool).secrets)
        env["ORCHESTRA_RUN_ID"] = self.run_id
        env["ORCHESTRA_TASK_ID"] = task.id
        env["ORCHESTRA_ATTEMPT"] = str(attempt)
        return env, secrets

    def shown_command(self, task: Task, secrets: Sequence[str]) -> str | None:
        """The task's command as the run database keeps it: a secret written in it, or
        one of the environment's, shows as ***. Masked once per task where the
        environment holds no secret (the command is the same for every attempt)."""
        if not secrets and task.id in self._shown:
            return self._shown[task.id]
        command = masked_command(task.command)
        if command and secrets:
            return redactor_for(frozenset(secrets)).redact(command)
        self._shown[task.id] = command
        return command

    def launch(
        self,
        tool: str,
        request: ExecutionRequest,
        space: RunWorkspace,
        *,
        env: dict[str, str],
        secrets: Sequence[str],
        log_path: str,
    ) -> AttemptLaunch:
        """The attempt's launch: its context (log, environment, timeouts, cancel, sandbox)
        and its task's checks, or else the workstream's."""
        task = request.task
        context = self.context(tool, request, space, env=env, secrets=secrets, log_path=log_path)
        checks: Sequence[Check] | None = task.checks
        if checks is None:
            checks = self.defaults.checks
        return AttemptLaunch(self.tools.get(tool), request, context, checks or (), space)

    def context(
        self,
        tool: str,
        request: ExecutionRequest,
        space: RunWorkspace,
        *,
        env: dict[str, str],
        secrets: Sequence[str],
        log_path: str,
    ) -> LocalContext:
        """The context ``tool``'s processes run through for ``request``: its log, its
        environment and the secrets to redact, the request's timeouts, the run's cancel,
        the tool's own directory, and the attempt's sandbox."""
        task = request.task
        return LocalContext(
            cwd=self.project_root,
            env=env,
            log_path=log_path,
            on_line=self._on_line(task.id),
            timeout=request.timeout,
            idle_timeout=request.idle_timeout,
            cancel=self.cancel,
            secrets=secrets,
            hurry=self.hurry,
            emit=self._emit(task.id, request.attempt),
            scratch_root=self._scratch_root,
            state_dir=self._tool_dir(tool),
            sandbox=self._sandbox(space, request),
        )

    def review_log_path(self, task_id: str, attempt: int) -> str:
        """The log of the review of attempt ``attempt``'s change, beside the attempt's."""
        return f"{self._log_prefix}{task_id}.{attempt}.review.log"

    def request(
        self,
        task: Task,
        attempt: int,
        profile: ToolProfile,
        *,
        feedback: str | None,
        continues: bool,
    ) -> ExecutionRequest:
        """What the tool is asked: the task's timeouts, or the settings'; ``workdir`` is
        the project's root until the workspace has made the attempt's directory."""
        settings = self.settings
        return ExecutionRequest(
            run_id=self.run_id,
            task=task,
            attempt=attempt,
            workdir=self.project_root,
            profile=profile,
            timeout=task.timeout if task.timeout is not None else settings.timeout,
            idle_timeout=(
                task.idle_timeout if task.idle_timeout is not None else settings.idle_timeout
            ),
            feedback=feedback,
            continues=continues,
            settings=self.plugin_settings,
        )

    def _emit(self, task_id: str, attempt: int) -> Callable[[str, Mapping[str, Any]], None]:
        post = self.post

        def emit(kind: str, payload: Mapping[str, Any]) -> None:
            post(EventPosted(f"tool.{kind}", payload, task_id, attempt))

        return emit

    def _on_line(self, task_id: str) -> Callable[[str], None] | None:
        lines = self.last_lines
        if lines is None:
            return None

        def on_line(line: str) -> None:
            if line.strip():
                lines[task_id] = line

        return on_line

    def _tool_dir(self, tool: str) -> str:
        """The tool's own directory, kept across attempts and runs."""
        if tool not in self._tool_dirs:
            self._tool_dirs[tool] = str(Path(self.state_dir) / "tools" / tool)
        return self._tool_dirs[tool]

    def _sandbox(self, space: RunWorkspace, request: ExecutionRequest) -> sandbox.Sandbox | None:
        """The attempt's sandbox, when the run's attempts are confined: it may write what
        its workspace names (``writable_paths``; the directory alone for a workspace that
        does not say), never orchestra's own directory."""
        if self.sandboxing.program is None:
            return None
        named = getattr(space, "writable_paths", None)
        if named is None:
            writable: Callable[[str], Sequence[str]] = _directory_alone
        else:
            writable = functools.partial(named, request)
        return sandbox.Sandbox(
            self.sandboxing.program,
            writable=writable,
            protected=[self.state_dir],
            extra=self._sandbox_extra,
            label=self.run_id,
            env=self.sandboxing.env,
            visible=[self.project_root],
        )
