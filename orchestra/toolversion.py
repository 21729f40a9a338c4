"""Finding a tool's program on PATH and asking it for its version, for ``available()``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from orchestra.models import Availability

_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?(?:[-.+][0-9A-Za-z.]+)?")


def find_version(
    program: str,
    version_args: Sequence[str] = ("--version",),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Availability:
    """Return whether ``program`` is on PATH and the version its ``--version`` prints.

    ``program`` may also be a path. The version is the first dotted number in the output.
    """
    path = shutil.which(program, path=(env or os.environ).get("PATH"))
    if path is None:
        where = "" if os.sep in program else " on PATH"
        return Availability(False, reason=f"{program} not found{where}")
    try:
        completed = subprocess.run(
            [path, *version_args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
        )
    except subprocess.TimeoutExpired:
        return Availability(
            False, path=path, reason=f"'{program} --version' did not answer in {timeout:g}s"
        )
    except OSError as error:
        return Availability(False, path=path, reason=f"cannot run {path}: {error.strerror}")
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        last = output.strip().splitlines()[-1:] or ["no output"]
        return Availability(
            False,
            path=path,
            reason=f"'{program} --version' exited {completed.returncode}: {last[0]}",
        )
    match = _VERSION.search(output)
    return Availability(True, version=match.group(0) if match else None, path=path)
