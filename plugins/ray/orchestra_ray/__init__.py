"""orchestra plugin: the executor ``ray``, which runs attempts on a Ray cluster, and its
setting ``ray_address`` (``--ray-address``).

A node advertises the tools it can run as custom resources (``ray start --resources
'{"tool:aider": 4}'``); each attempt becomes a Ray task that needs one unit of its
tool's resource. See docs/ray.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orchestra

if TYPE_CHECKING:
    from collections.abc import Callable

    from orchestra_ray.executor import RayRun

#: the setting that names the cluster: ``ray_address`` in orchestra.toml,
#: ``ORCHESTRA_RAY_ADDRESS``, ``--ray-address`` of run and resume
ADDRESS = "ray_address"


class RayExecutor:
    """Runs each attempt as a Ray task needing ``{"tool:<name>": 1}``.

    Registering it imports neither Ray nor the executor's module: every ``orchestra``
    command registers the executors, and only a run that uses this one needs them.
    """

    name = "ray"

    def open(self, run: orchestra.ExecutorRun) -> RayRun:
        from orchestra_ray.executor import RayRun

        return RayRun(run)


@orchestra.hookimpl
def orchestra_register_executors(register: Callable[[orchestra.Executor], None]) -> None:
    register(RayExecutor())


@orchestra.hookimpl
def orchestra_register_settings(register: Callable[[orchestra.PluginSetting], None]) -> None:
    register(
        orchestra.PluginSetting(
            ADDRESS,
            str,
            "The Ray cluster the ray executor joins.",
            metavar="ADDRESS",
        )
    )
