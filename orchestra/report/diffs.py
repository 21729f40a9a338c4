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
            current = attrs.evolve(current, path=unquote(line.removeprefix("rename to ")))
        elif not in_hunk and line.startswith(("+++ b/", '+++ "b/')):
            path = unquote(line.removeprefix("+++ ").removesuffix("\t"))
            current = attrs.evolve(current, path=path.removeprefix("b/"))
        elif line.startswith("Binary files ") and line.endswith(" differ"):
            current = attrs.evolve(current, binary=True)
    if current is not None:
        files.append(current)
    return tuple(files)


def _path_of_header(line: str) -> str:
    # "diff --git a/x b/x": the two paths are the same length unless the file was renamed,
    # and a rename's "rename to" line corrects it; splitting on " b/" would break on
    # paths that contain it. git quotes a path with a quote, a backslash, a control or a
    # non-ASCII character ("b/caf\303\251.txt"), never one with only spaces.
    paths = line.removeprefix("diff --git ")
    if paths.endswith('"'):
        return unquote(paths[paths.rindex(' "', 0, len(paths) - 1) + 1 :]).removeprefix("b/")
    half = (len(paths) - 1) // 2
    if paths[half] == " " and paths[:half].removeprefix("a/") == paths[half + 1 :].removeprefix(
        "b/"
    ):
        return paths[half + 1 :].removeprefix("b/")
    return paths.rsplit(" b/", 1)[-1]


#: what follows a backslash in a path git quoted, as C does
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def unquote(path: str) -> str:
    """Return a path as git wrote it in a diff, unquoted: ``"caf\\303\\251.txt"`` is
    ``café.txt`` (octal escapes are the bytes of its UTF-8); an unquoted path is itself."""
    if len(path) < 2 or not (path.startswith('"') and path.endswith('"')):
        return path
    raw = bytearray()
    text, index = path[1:-1], 0
    while index < len(text):
        char = text[index]
        if char != "\\" or index + 1 == len(text):
            raw += char.encode()
            index += 1
        elif text[index + 1] in _ESCAPES:
            raw.append(_ESCAPES[text[index + 1]])
            index += 2
        else:  # three octal digits: a byte
            raw.append(int(text[index + 1 : index + 4], 8) & 0xFF)
            index += 4
    return raw.decode("utf-8", errors="replace")
