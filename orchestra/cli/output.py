"""Writing a command's output file: whole or not at all, and a clear error when it cannot."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from orchestra.errors import OrchestraError


def write_output(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, so that a failure
    never leaves half a file; an unwritable place is an OrchestraError naming it.

    The file gets the permissions a plain ``open`` would give it (those of the file it
    replaces, else 0666 less the umask), not the temporary file's private 0600.
    """
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", dir=path.parent if str(path.parent) else "."
        )
    except OSError as error:
        raise OrchestraError(f"cannot write {path}: {error.strerror}") from None
    try:
        os.fchmod(descriptor, _mode_for(path))
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise OrchestraError(f"cannot write {path}: {error.strerror}") from None


def _mode_for(path: Path) -> int:
    """The permission bits of the file being replaced, or of a new file under the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0o022)  # reading the umask means setting it; put it back at once
        os.umask(umask)
        return 0o666 & ~umask
