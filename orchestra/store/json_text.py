"""The JSON text the store writes: settings, event payloads and small values, compact."""

from __future__ import annotations

import json
from typing import Any

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _not_serialisable(value: Any) -> Any:
    return _ENCODER.default(value)  # raises TypeError, as json.dumps does


# json's C encoder made once: JSONEncoder.encode makes one per call, a third of the cost
# of the small payloads the run loop writes by the thousand. No check for cycles: payloads
# are plain data the store's callers build.
_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # private: typeshed has none
_C_ENCODE = (
    _MAKE_ENCODER(
        None, _not_serialisable, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    if _MAKE_ENCODER is not None
    else None
)


def to_json(value: Any) -> str:
    """Return ``value`` as compact JSON text (TypeError for what JSON cannot hold)."""
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))
