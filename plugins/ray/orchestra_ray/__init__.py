"""orchestra plugin: the executor ``ray``, which runs attempts on a Ray cluster.

A node advertises the tools it can run as custom resources (``ray start --resources
'{"tool:aider": 4}'``); each attempt becomes a Ray task that needs one unit of its
tool's resource. See docs/ray.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orchestra

if TYPE_CHECKING:
    from orchestra.models import ExecutorRun
    from orchestra_ray.executor import RayRun


class RayExecutor:
    """Runs each attempt as a Ray task needing ``{"tool:<name>": 1}``.

    Registering it imports neither Ray nor the executor's module: every ``orchestra``
    command registers the executors, and only a run that uses this one needs them.
    """

    name = "ray"

    def open(self, run: ExecutorRun) -> RayRun:
        from orchestra_ray.executor import RayRun

        return RayRun(run)


@orchestra.hookimpl
def orchestra_register_executors(register) -> None:
    register(RayExecutor())
