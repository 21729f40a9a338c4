"""Finding a tool's program on PATH and asking it for its version, for ``available()``.

Asking is slow: ``aider --version`` starts a large Python program (10 s on a cold
machine), and ``tools``, ``init``, ``plan`` and ``run`` all ask. So the answer is kept
in the user's cache directory (``$XDG_CACHE_HOME/orchestra/versions.json``, else
``~/.cache/orchestra/``), per program file, the arguments it was asked with and PATH,
and asked again only when the file changes (its modification time, size or inode: an
upgrade replaces or rewrites it). Only answers that worked are kept; a cache that
cannot be read or written is passed by, never an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestra.models import Availability

_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?(?:[-.+][0-9A-Za-z.]+)?")
#: the versions kept: enough for every tool of a machine, small enough to read at once
CACHE_ENTRIES = 64


def find_version(
    program: str,
    version_args: Sequence[str] = ("--version",),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Availability:
    """Return whether ``program`` is on PATH and the version its ``--version`` prints.

    ``program`` may also be a path. The version is the first dotted number in the
    output, asked once per program file (see the module's docstring).
    """
    search_path = (env or os.environ).get("PATH")
    path = shutil.which(program, path=search_path)
    if path is None:
        where = "" if os.sep in program else " on PATH"
        return Availability(False, reason=f"{program} not found{where}")
    # PATH too: a script's interpreter (#!/usr/bin/env node) is found on it
    key = json.dumps([path, list(version_args), search_path])
    identity = _file_identity(path)
    cache = _read_cache()
    entry = cache.get(key)
    if identity is not None and isinstance(entry, dict) and entry.get("file") == identity:
        return Availability(True, version=entry.get("version"), path=path)
    found = _ask(program, path, version_args, env, timeout)
    if found.available and identity is not None:
        cache.pop(key, None)  # the newest last: the oldest are dropped first
        cache[key] = {"file": identity, "version": found.version}
        _write_cache(dict(list(cache.items())[-CACHE_ENTRIES:]))
    return found


def _ask(
    program: str,
    path: str,
    version_args: Sequence[str],
    env: Mapping[str, str] | None,
    timeout: float,
) -> Availability:
    """Run ``path`` with ``version_args`` and read the version it prints."""
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


def _file_identity(path: str) -> list[int] | None:
    """What changes when a program file is replaced or rewritten (through symlinks)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return [found.st_mtime_ns, found.st_ctime_ns, found.st_size, found.st_ino]


def cache_file() -> Path:
    """Return where the versions are kept: ``orchestra/versions.json`` in the user's
    cache directory (``$XDG_CACHE_HOME`` when it is an absolute path, else ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "orchestra" / "versions.json"


def _read_cache() -> dict:
    try:
        cache = json.loads(cache_file().read_bytes())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_cache(cache: dict) -> None:
    """Replace the cache file whole (a reader never sees half of it); give up quietly."""
    target = cache_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".versions.", dir=target.parent)
    except OSError:
        return
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(cache, stream)
        os.replace(temporary, target)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
