"""SHA-256 without loading OpenSSL.

``hashlib`` loads OpenSSL's library when it is imported, about 3 ms of every command
that reads a workstream (benchmarks/startup.py). Python's own SHA-256 gives the same
digests and loads nothing: it is used where the interpreter was built with it (the
default), ``hashlib``'s otherwise.
"""

from __future__ import annotations

try:
    from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:  # built without its own hashes: OpenSSL's
        from hashlib import sha256

__all__ = ["sha256"]
