"""Several workstream files read as one workstream: a directory of bundles, or several
files named together on the command line.

Every file is loaded by its own format, then the tasks of all of them make one graph: a
``depends_on`` may name a task (or a bundle's steps, by the bundle's id) in any file. The
problems of every file are reported together, each naming the file that holds it. The
workstream's id and title come from the directory, unless the ``workstream_id`` and
``title`` options say otherwise. A run records the set as ``recorded(arguments)``, and
``digest`` tells ``resume`` whether any file of the set changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import attrs

from orchestra import classes, graph
from orchestra.digests import sha256
from orchestra.errors import OrchestraError, SpecError, WorkstreamInvalid
from orchestra.models import Defaults, Workstream

#: how a dependency on a task that no file of the set holds is said
UNKNOWN = "depends on a task in none of the files:"
#: files in a directory that configure a project rather than describe work
NOT_WORKSTREAMS = frozenset({"orchestra.toml", "pyproject.toml"})
#: files a directory of plans often holds beside them that a format claims by name but
#: that are never work (a package's manifest, a JSON schema): passed over with a notice
#: when no format reads them. Any other such file is an error: it may be someone's work
PASSED_OVER = (
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "jsconfig.json",
    "composer.json",
    "*.schema.json",
)


@classes.frozen
class Source:
    """What a workstream is read from: the paths as given, and every file they hold."""

    arguments: tuple[str, ...]
    files: tuple[Path, ...]
    #: files found in a directory (not named on the command line): one that no format
    #: recognises is passed over with a notice instead of being an error
    found: frozenset[Path] = frozenset()
    #: each file's name as the set knows it: relative to the directory that holds it, or
    #: the file's own name, so that the same set given another way digests alike
    names: tuple[str, ...] = ()

    @property
    def is_set(self) -> bool:
        """Whether this is more than one file read as one workstream."""
        return len(self.arguments) > 1 or bool(self.found)

    @property
    def label(self) -> str:
        """How messages name the whole: the directory, or the files' names."""
        return ", ".join(self.arguments)


def recorded(arguments: Sequence[str]) -> str:
    """Return how a run records its workstream's paths: the absolute path of one file or
    directory, or a JSON list of them."""
    paths = [str(Path(argument).resolve()) for argument in arguments]
    return paths[0] if len(paths) == 1 else json.dumps(paths)


def arguments_of(record: str) -> list[str]:
    """Return the paths a run recorded with ``recorded``."""
    if record.startswith("["):
        try:
            paths = json.loads(record)
        except ValueError:
            return [record]
        if isinstance(paths, list) and all(isinstance(path, str) for path in paths):
            return paths
    return [record]


def expand(arguments: Sequence[str], patterns: Sequence[str]) -> Source:
    """Return the files ``arguments`` name: each file as it is, and under each directory
    every file a format claims by name (``patterns``), hidden ones and project
    configuration left out, in path order.

    Raises SpecError for a path that does not exist or a directory with no such file.
    """
    named: dict[Path, str] = {}
    found: set[Path] = set()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            inside = _workstream_files(path, patterns)
            if not inside:
                wanted = ", ".join(patterns)
                raise SpecError(f"no workstream files ({wanted}) in this directory", file=argument)
            for file in inside:
                named.setdefault(file, file.relative_to(path).as_posix())
            found.update(inside)
        elif path.is_file():
            named.setdefault(path, path.name)
        elif path.exists():
            # a pipe (``<(…)``) would be used up by the sniff before its loader read it
            raise SpecError("not a regular file: write it to a file first", file=argument)
        else:
            raise SpecError("no such file", file=argument)
    files = tuple(named)
    return Source(tuple(arguments), files, frozenset(found), tuple(named.values()))


def _workstream_files(directory: Path, patterns: Sequence[str]) -> list[Path]:
    chosen = []
    for root, directories, names in os.walk(directory):
        directories[:] = sorted(name for name in directories if not name.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name in NOT_WORKSTREAMS:
                continue
            path = Path(root, name)
            # a FIFO or a device would block a reader: regular files only
            if any(fnmatch(name, pattern) for pattern in patterns) and path.is_file():
                chosen.append(path)
    return chosen


def passed_over(path: Path) -> bool:
    """Whether a file found in a directory is one that is never work (``PASSED_OVER``)."""
    return any(fnmatch(path.name, pattern) for pattern in PASSED_OVER)


def digest(source: Source, file_digests: Mapping[Path, bytes] | None = None) -> str:
    """Return the SHA-256 a run keeps of its workstream: of the file's bytes for one
    file; of each file's name in the set (relative to its directory) and bytes for a
    set, so that a changed, added, removed or renamed file changes it, and the same
    files given by a relative or an absolute path digest alike.

    ``file_digests`` holds the SHA-256 of files already read (the bytes a load parsed);
    the others are read now."""
    known = file_digests or {}

    def of(file: Path) -> bytes:
        found = known.get(file)
        return found if found is not None else sha256(file.read_bytes()).digest()

    if not source.is_set:
        return of(source.files[0]).hex()
    whole = sha256()
    for file, name in zip(source.files, source.names, strict=True):
        whole.update(os.fsencode(name) + b"\0")
        whole.update(of(file))
    return whole.hexdigest()


def merge(
    parts: Sequence[tuple[Path, Workstream]],
    source: Source,
    options: Mapping[str, Any],
    *,
    complete: bool = True,
) -> tuple[Workstream, dict[str, str]]:
    """Return the one workstream the loaded ``parts`` make, and each task's file.

    Raises WorkstreamInvalid naming, for each problem, the file that holds it:
    duplicate ids across files, [defaults] that disagree, unknown dependencies (with a
    did-you-mean), cycles (each task with its file). When the parts are not
    ``complete`` (a file of the set could not be read), a dependency on a task in none
    of them is not a problem: it may be in the file that could not be read.
    """
    problems: list[OrchestraError] = []
    file_of: dict[str, str] = {}
    tasks = []
    aliases: dict[str, tuple[str, ...]] = {}
    alias_file: dict[str, str] = {}
    defaults, defaults_file = Defaults(), None
    for path, workstream in parts:
        file = str(path)
        if workstream.defaults != Defaults():
            if defaults_file is None:
                defaults, defaults_file = workstream.defaults, file
            elif workstream.defaults != defaults:
                message = f"[defaults] differ from those in {defaults_file}; a set shares one"
                problems.append(SpecError(message, file=file, field="defaults"))
        for task in workstream.tasks:
            if task.id in file_of:
                message = f"duplicate task id, also in {file_of[task.id]}"
                problems.append(SpecError(message, file=file, task=task.id, field="id"))
                continue
            file_of[task.id] = file
            tasks.append(task)
        for name, members in workstream.aliases.items():
            if name in alias_file:
                message = f"duplicate bundle id, also in {alias_file[name]}"
                problems.append(SpecError(message, file=file, task=name, field="id"))
                continue
            aliases[name], alias_file[name] = members, file
    for name, file in alias_file.items():
        if name in file_of:
            message = f"bundle id {name!r} is also the id of a task in {file_of[name]}"
            problems.append(SpecError(message, file=file, task=name, field="id"))
    directory = _directory_of(source)
    workstream_id = options.get("workstream_id") or _as_id(directory.name)
    # a directory named "Q3 plan" is the workstream Q3-plan, titled "Q3 plan"
    title = options.get("title") or (directory.name if directory.name != workstream_id else None)
    merged = Workstream(
        id=workstream_id,
        title=title,
        tasks=tuple(tasks),
        defaults=defaults,
        source=source.label,
        aliases=aliases,
    )
    merged = resolve_aliases(merged)
    found = _graph_problems(merged, file_of, source.label)
    if not complete:
        found = [problem for problem in found if not problem.message.startswith(UNKNOWN)]
    problems.extend(found)
    if problems:
        raise WorkstreamInvalid(source.label, problems)
    return merged, file_of


def resolve_aliases(workstream: Workstream) -> Workstream:
    """Return ``workstream`` with each dependency on an alias (a bundle of steps) made a
    dependency on the tasks it stands for."""
    aliases = workstream.aliases
    if not aliases:
        return workstream
    tasks = []
    for task in workstream.tasks:
        if any(need in aliases for need in task.depends_on):
            needs: list[str] = []
            for need in task.depends_on:
                needs.extend(aliases.get(need, (need,)))
            task = attrs.evolve(task, depends_on=tuple(dict.fromkeys(needs)))
        tasks.append(task)
    return attrs.evolve(workstream, tasks=tuple(tasks))


def _graph_problems(
    workstream: Workstream, file_of: Mapping[str, str], label: str
) -> list[OrchestraError]:
    """The problems of the merged graph, each in the file of its task: unknown
    dependencies (a bundle in none of the files), and cycles named with their files."""
    from orchestra.spec import check_workstream

    problems: list[OrchestraError] = []
    for problem in check_workstream(workstream, label):
        problem.file = file_of.get(problem.task or "", problem.file)
        if problem.message.startswith("unknown task "):
            problem.message = problem.message.replace("unknown task", UNKNOWN, 1)
        elif problem.message.startswith("dependency cycle: "):
            cycle = graph.find_cycle({task.id: task.depends_on for task in workstream.tasks})
            if cycle:
                named = " -> ".join(f"{task} ({Path(file_of[task]).name})" for task in cycle)
                problem.message = f"dependency cycle across files: {named}"
        problems.append(problem)
    return problems


def _directory_of(source: Source) -> Path:
    """The directory a set is named after: the one given, or the files' common parent."""
    if len(source.arguments) == 1:
        return Path(source.arguments[0]).resolve()
    parents = [str(Path(argument).resolve().parent) for argument in source.arguments]
    return Path(os.path.commonpath(parents))


def _as_id(name: str) -> str:
    from orchestra.loaders.jsonfile import as_id

    return as_id(name)
