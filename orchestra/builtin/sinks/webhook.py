"""The event sink ``webhook``: each event POSTed as JSON to a URL, with bounded retries."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from orchestra import __version__
from orchestra.builtin.sinks.courier import Courier, CourierSink, DeliveryFailed, ignore
from orchestra.builtin.sinks.options import SinkOptions
from orchestra.models import SinkContext

#: HTTP statuses worth trying again: the server may answer the next time
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: the first wait before a webhook retries, doubled each time, and its ceiling
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 8.0


class WebhookSink(CourierSink):
    """POSTs each event (or those of the chosen ``kinds``) as JSON to a URL, from a thread
    of its own, with bounded retries."""

    name = "webhook"
    OPTIONS = ("url", "kinds", "headers", "timeout", "retries", "queue_size")

    def __init__(self) -> None:
        self._courier: Courier | None = None
        self._kinds: tuple[str, ...] = ("*",)
        self._timeout = 5.0

    def open(self, context: SinkContext) -> None:
        """Read the options and start the delivery thread (a fresh one for each run)."""
        self.close()
        options = SinkOptions(self.name, context.options, self.OPTIONS)
        shown = options.text("url", "the URL to POST each event to")
        url = options.variables("url", shown, os.environ)
        if not url.startswith(("http://", "https://")):
            raise options.error("url", f"expected an http:// or https:// URL, got {shown!r}")
        headers = options.table.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(value, str) for value in headers.values()
        ):
            raise options.error("headers", f"expected a table of strings, got {headers!r}")
        sent = {"Content-Type": "application/json", "User-Agent": f"orchestra/{__version__}"}
        sent.update(
            {
                name: options.variables("headers", value, os.environ)
                for name, value in headers.items()
            }
        )
        self._kinds = options.kinds(("*",))
        self._timeout = options.number("timeout", 5.0)
        retries = options.integer("retries", 3, minimum=0)
        capacity = options.integer("queue_size", 1000, minimum=1)
        timeout = self._timeout

        def deliver(event: Mapping[str, Any], courier: Courier) -> None:
            body = json.dumps(event, default=str).encode()
            for attempt in range(retries + 1):
                pause = min(_BACKOFF_FIRST * 2 ** (attempt - 1), _BACKOFF_MAX)
                if attempt and courier.stopped.wait(pause):
                    raise DeliveryFailed("given up")
                problem, again = _post(url, body, sent, timeout)
                if problem is None:
                    return
                courier.trouble = f"POST {event.get('type')} to {shown}: {problem}"
                if not again:
                    break
            tries = f"{attempt + 1} tr{'y' if attempt == 0 else 'ies'}"
            raise DeliveryFailed(f"{courier.trouble}, {tries}")

        self._courier = Courier(self.name, deliver, capacity, context.warn or ignore)


def _post(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[str | None, bool]:
    """POST ``body``; return what went wrong (None when it worked) and whether to retry."""
    import urllib.error  # here, not at start-up: every orchestra command loads this plugin
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1 << 16)
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code} {error.reason}", error.code in _RETRYABLE_STATUS
    except urllib.error.URLError as error:
        return f"{error.reason}", True
    except (TimeoutError, OSError) as error:
        return f"{error or type(error).__name__}", True
    return None, False
