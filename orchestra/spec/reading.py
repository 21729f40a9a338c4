"""Reading workstream files: their bytes, or their TOML document, or one clear SpecError.

The loaders of every format read through here (``read_file``), as does orchestra.toml
(``read_toml``), so that a missing, unreadable or malformed file is named the same way
whatever the format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestra.errors import SpecError


def read_file(path: Path, size: int = -1) -> bytes:
    """Return the bytes of a workstream file (its first ``size`` when given); a file
    that cannot be read raises SpecError saying why, naming it."""
    try:
        with path.open("rb") as stream:
            return stream.read(size)
    except FileNotFoundError:
        raise SpecError("no such file", file=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a workstream file", file=str(path)) from None
    except OSError as error:
        raise SpecError(f"cannot read: {error.strerror}", file=str(path)) from None


def read_toml(path: Path) -> dict[str, Any]:
    """Return the TOML document at ``path``; unreadable or malformed files raise SpecError."""
    import tomli  # compiled tomli parses large files about twice as fast as tomllib

    raw = read_file(path)
    try:
        # "utf-8-sig": a byte order mark (Windows editors write one) is no statement
        return tomli.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise SpecError(f"not UTF-8 text (byte {error.start})", file=str(path)) from None
    except tomli.TOMLDecodeError as error:
        raise SpecError(f"invalid TOML: {error}", file=str(path)) from None
    except ValueError:  # tomli hands on Python's limit on integer literal length
        raise SpecError("invalid TOML: an integer literal is too long", file=str(path)) from None
    except RecursionError:
        raise SpecError("invalid TOML: nested too deeply", file=str(path)) from None
