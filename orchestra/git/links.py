"""Where a commit's symbolic links really lead: inside the repository, or out of it.

A link's target read as text says little. ``config -> d1/up/../../x`` reads as ``x``,
inside; but when ``d1/up`` is itself a link (``-> ..``, the repository's top), ``up/..``
is the top's parent, and ``config`` leads out. So a link is followed here the way the
kernel follows it, one name at a time, through the other links of the same commit,
from the directory it sits in. It leads out when a ``..`` climbs above the top, when a
target is absolute, when it ends in a ``.git`` (the user's git directory, once the run
branch is merged), or when it cannot be followed to its end (more than ``MAX_HOPS``
links: the kernel gives up there too). A name the commit does not hold is taken for a
directory (the kernel cannot pass it yet; a directory made there later goes where the
name says; a link made there later is a change to links, judged then).

The commit is judged, not the work tree: it is what lands, and no process still running
can change it. Whether one change turns a link outward is ``escapes``: a link it adds or
retargets that leads out, or a link it left alone that led inside before it and leads out
after it (a directory on its way replaced by a link, a link on its way retargeted).
"""

from __future__ import annotations

import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from orchestra.git import refs
from orchestra.git.changes import Changed
from orchestra.git.command import Where, run_git

__all__ = ["LINK_MODE", "MAX_HOPS", "Links", "escapes", "links_in"]

#: git's mode of a symbolic link
LINK_MODE = "120000"
#: how many links one path may go through: Linux's MAXSYMLINKS
MAX_HOPS = 40


def escapes(
    where: Where, base: str, commit: str, changed: Iterable[Changed]
) -> list[tuple[str, str]]:
    """Return the links of ``commit`` that the change from ``base`` turns outward, each
    as ``(path, target)``, sorted; nothing (and no git command) when the change touches
    no link."""
    changed = list(changed)
    if not any(LINK_MODE in (entry.old_mode, entry.new_mode) for entry in changed):
        return []  # only links decide where a path leads (see the module's docstring)
    fold = _folding(where)
    after = Links(links_in(where, commit), fold)
    outward = {path for path in after.targets if after.leads_out(path)}
    if not outward:
        return []
    made = {entry.path for entry in changed if entry.new_mode == LINK_MODE}
    kept = outward - made
    if kept:  # links it did not touch: blamed only if they led inside before
        before = Links(links_in(where, base), fold)
        kept = {path for path in kept if path not in before.targets or not before.leads_out(path)}
    return sorted((path, after.targets[path]) for path in (outward & made) | kept)


def links_in(where: Where, commit: str) -> dict[str, str]:
    """Return ``{path: target}`` of every symbolic link in ``commit``."""
    listing = run_git(where, "ls-tree", "-r", "-z", "--full-tree", refs.resolve(where, commit))
    objects = {}
    for record in listing.stdout.split("\0"):
        meta, _, path = record.partition("\t")
        if meta.startswith(LINK_MODE + " "):
            objects[path] = meta.split(" ")[2]
    if not objects:
        return {}
    ids = list(dict.fromkeys(objects.values()))
    contents = run_git(where, "cat-file", "--batch", input="".join(f"{oid}\n" for oid in ids))
    targets = _batch_contents(contents.stdout)
    return {path: targets[oid] for path, oid in objects.items()}


class Links:
    """The symbolic links of one commit, to follow (see the module's docstring)."""

    def __init__(self, targets: Mapping[str, str], fold: Callable[[str], str] = str) -> None:
        #: ``{path: target}`` as the commit holds them
        self.targets = dict(targets)
        #: how the file system compares names: as they are (``str``), or folded
        self.fold = fold
        self._folded = {fold(path): target for path, target in targets.items()}

    def leads_out(self, path: str) -> bool:
        """Whether following the link ``path`` ends outside the repository, in a
        ``.git``, or nowhere that can be told (more than ``MAX_HOPS`` links)."""
        target = self.targets[path]
        if target.startswith("/"):
            return True
        position = path.split("/")[:-1]  # a committed path goes through directories only
        pending = deque(target.split("/"))
        hops = 1
        while pending:
            name = pending.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if not position:
                    return True  # above the top
                position.pop()
                continue
            found = self._folded.get(self.fold("/".join([*position, name])))
            if found is None:  # a directory, a file, or nothing yet: see the docstring
                position.append(name)
                continue
            target = found
            hops += 1
            if hops > MAX_HOPS or target.startswith("/"):
                return True
            pending.extendleft(reversed(target.split("/")))
        return any(self.fold(name) == ".git" for name in position)


def _batch_contents(output: str) -> dict[str, str]:
    """``{id: content}`` from ``git cat-file --batch`` output (read as text with
    surrogateescape: the sizes it gives are in bytes)."""
    data = output.encode("utf-8", "surrogateescape")
    contents = {}
    at = 0
    while at < len(data):
        end = data.index(b"\n", at)
        oid, _, size = data[at:end].decode().split(" ")
        start = end + 1
        contents[oid] = data[start : start + int(size)].decode("utf-8", "surrogateescape")
        at = start + int(size) + 1  # the content is followed by a newline
    return contents


def _folding(where: Where) -> Callable[[str], str]:
    """How the work tree's file system tells names apart: as they are, or (where git
    found it ignores case, ``core.ignorecase``: macOS, Windows) case and Unicode
    normalisation folded."""
    setting = run_git(where, "config", "--type=bool", "core.ignorecase", check=False)
    if setting.stdout.strip() != "true":
        return lambda name: name
    return lambda name: unicodedata.normalize("NFC", name).casefold()
