"""orchestra plugin: the executor ``ray``, which runs attempts on a Ray cluster.

A node advertises the tools it can run as custom resources (``ray start --resources
'{"tool:aider": 4}'``); each attempt becomes a Ray task that needs one unit of its
tool's resource. See docs/ray.md.
"""

from __future__ import annotations

import orchestra


@orchestra.hookimpl
def orchestra_register_executors(register) -> None:
    from orchestra_ray.executor import RayExecutor

    register(RayExecutor())
