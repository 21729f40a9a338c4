"""Writing a command's output file: whole or not at all, and a clear error when it cannot."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from orchestra.errors import OrchestraError


def write_output(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, so that a failure
    never leaves half a file; an unwritable place is an OrchestraError naming it."""
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", dir=path.parent if str(path.parent) else "."
        )
    except OSError as error:
        raise OrchestraError(f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise OrchestraError(f"cannot write {path}: {error.strerror}") from None
