"""Scope enforcement: does an attempt's change stay within what its task may touch?

A task's ``files`` are paths and globs relative to the repository. With ``write`` or
``create`` given, every changed path must match one of them; a path matching
``forbidden`` is refused whatever else says. ``max_files_changed`` and
``max_lines_changed`` bound the size of the change. A symbolic link that points outside
the repository is refused whatever the scope: whoever writes through it later (the next
attempt, the user) writes outside.
"""

from __future__ import annotations

import fnmatch

from orchestra.models import Change, Defaults, Task


def matches(path: str, pattern: str) -> bool:
    """Whether a repository path matches a scope entry: the path itself, a directory
    (``src/`` or ``src``: everything under it) or a glob (``*`` also crosses ``/``)."""
    pattern = pattern.strip().removeprefix("./")
    if pattern.endswith("/"):
        return path.startswith(pattern)
    return path == pattern or path.startswith(pattern + "/") or fnmatch.fnmatchcase(path, pattern)


def violations(task: Task, defaults: Defaults, change: Change) -> list[str]:
    """Return what is wrong with the change, one short phrase each; empty when it fits."""
    if change.paths is None:
        return []
    problems = [
        f"made {path} a symbolic link to {target}, outside the repository"
        for path, target in change.escapes
    ]
    scope = task.files
    allowed = (*scope.write, *scope.create)
    forbidden = [p for p in change.paths if any(matches(p, f) for f in scope.forbidden)]
    if forbidden:
        problems.append(f"changed forbidden {', '.join(forbidden)}")
    if allowed:
        outside = [
            p
            for p in change.paths
            if p not in forbidden and not any(matches(p, a) for a in allowed)
        ]
        if outside:
            problems.append(f"changed {', '.join(outside)} outside files.write/create")
    most_files = _pick(task.max_files_changed, defaults.max_files_changed)
    if most_files is not None and len(change.paths) > most_files:
        problems.append(f"changed {len(change.paths)} files, more than {most_files}")
    most_lines = _pick(task.max_lines_changed, defaults.max_lines_changed)
    if most_lines is not None and change.lines > most_lines:
        problems.append(f"changed {change.lines} lines, more than {most_lines}")
    return problems


def _pick(own: int | None, shared: int | None) -> int | None:
    return own if own is not None else shared
