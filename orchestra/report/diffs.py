"""What a stored change touched: the files of a unified diff and their added and deleted lines."""

from __future__ import annotations

import attrs

from orchestra import classes


@classes.frozen
class FileChange:
    """One file of a change: its path, and the lines added and deleted (0 for a binary file)."""

    path: str
    added: int = 0
    deleted: int = 0
    binary: bool = False


def summarize_diff(diff: str | None) -> tuple[FileChange, ...]:
    """Return the files a ``git diff`` changes, in its order, with their +/- line counts."""
    if not diff:
        return ()
    files: list[FileChange] = []
    current: FileChange | None = None
    in_hunk = False
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            if current is not None:
                files.append(current)
            current, in_hunk = FileChange(_path_of_header(line)), False
        elif current is None:
            continue
        elif line.startswith("@@"):
            in_hunk = True
        elif in_hunk and line.startswith("+"):
            current = attrs.evolve(current, added=current.added + 1)
        elif in_hunk and line.startswith("-"):
            current = attrs.evolve(current, deleted=current.deleted + 1)
        elif not in_hunk and line.startswith("rename to "):
            current = attrs.evolve(current, path=line.removeprefix("rename to "))
        elif not in_hunk and line.startswith("+++ b/"):
            current = attrs.evolve(current, path=line.removeprefix("+++ b/"))
        elif line.startswith("Binary files ") and line.endswith(" differ"):
            current = attrs.evolve(current, binary=True)
    if current is not None:
        files.append(current)
    return tuple(files)


def _path_of_header(line: str) -> str:
    # "diff --git a/x b/x": the two paths are the same length unless the file was renamed,
    # and a rename's "rename to" line corrects it; splitting on " b/" would break on
    # paths that contain it.
    paths = line.removeprefix("diff --git ")
    half = (len(paths) - 1) // 2
    if paths[half] == " " and paths[:half].removeprefix("a/") == paths[half + 1 :].removeprefix(
        "b/"
    ):
        return paths[half + 1 :].removeprefix("b/")
    return paths.rsplit(" b/", 1)[-1]
