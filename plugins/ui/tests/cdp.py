"""A small synchronous client for Chromium's DevTools protocol over a pipe.

Chromium started with ``--remote-debugging-pipe`` reads protocol messages from its file
descriptor 3 and writes its answers and events to descriptor 4, each message one JSON
object followed by a NUL byte. That needs no websocket library and no download: Debian's
``/usr/bin/chromium`` is enough. A reader thread hands each reply to the call waiting for
its id and each event to the page (session) it belongs to.

    with Browser.start(tmp_path) as browser:
        page = browser.new_page()
        page.goto("http://127.0.0.1:8000/")
        page.wait_for("document.body.dataset.rendered")
        page.click("tr[data-run-id]")

A page records what a person would see go wrong: JavaScript dialogs (dismissed at once, so
that nothing blocks), console errors, uncaught exceptions and the browser's own error log
entries (failed loads, Content-Security-Policy violations).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1400, 1000)
CALL_TIMEOUT = 30.0

#: Chromium's flags: headless, a throwaway profile, and nothing that reaches for the network
#: (this machine has none, and the refused connections only slow the start)
FLAGS = (
    "--headless=new",
    "--remote-debugging-pipe",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)


class ProtocolError(Exception):
    """Chromium answered a command with an error, or did not answer."""


class JavaScriptError(Exception):
    """An expression given to ``Page.evaluate`` threw."""


@dataclass(frozen=True)
class PageError:
    """Something that went wrong in a page: ``kind`` is console, exception or log."""

    kind: str
    text: str
    url: str = ""
    source: str = ""  # a log entry's source: network, security, javascript…

    def __str__(self) -> str:
        where = f" ({self.url})" if self.url else ""
        return f"{self.kind}{'/' + self.source if self.source else ''}: {self.text}{where}"


class Browser:
    """A running headless Chromium, driven through its debugging pipe.

    Use it as a context manager (or call ``close``): the browser and every process it
    started are killed however the block ends.
    """

    def __init__(self, process: subprocess.Popen[bytes], to_browser: int, from_browser: int):
        self.process = process
        self._to_browser = to_browser
        self._from_browser = from_browser
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._waiting: dict[int, Future[dict[str, Any]]] = {}
        self._sessions: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, tmp_dir: str | os.PathLike[str], chromium: Path = CHROMIUM) -> Browser:
        """Start headless Chromium with a fresh profile under ``tmp_dir``; return it."""
        profile = Path(tmp_dir) / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        flags = [*FLAGS, f"--user-data-dir={profile}"]
        if os.geteuid() == 0:  # Chromium refuses to run its sandbox as root
            flags.append("--no-sandbox")
        # we write to its fd 3 and read its fd 4; bash puts the pipe ends there (pass_fds
        # keeps descriptors under their own numbers; dash knows no fd above 9)
        their_input, to_browser = _pipe_above(10)
        from_browser, their_output = _pipe_above(10)
        redirect = (
            f'exec "$@" 3<&{their_input} 4>&{their_output} {their_input}<&- {their_output}>&-'
        )
        log = profile.parent / "chromium.log"
        try:
            with log.open("wb") as output:
                process = subprocess.Popen(
                    ["/bin/bash", "-c", redirect, "bash", str(chromium), *flags, "about:blank"],
                    pass_fds=(their_input, their_output),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    start_new_session=True,  # its own process group, killed whole by close()
                )
        finally:
            os.close(their_input)
            os.close(their_output)
        browser = cls(process, to_browser, from_browser)
        try:
            browser.send("Browser.getVersion")
        except ProtocolError as error:
            browser.close()
            said = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise ProtocolError(f"{chromium} did not start ({error}): {said}") from None
        except BaseException:
            browser.close()
            raise
        return browser

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the protocol -------------------------------------------------------------------

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session_id: str | None = None,
        timeout: float = CALL_TIMEOUT,
    ) -> dict[str, Any]:
        """Send one command and return its result; raise ProtocolError on an error reply."""
        future = self.post(method, params, session_id)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise ProtocolError(f"{method}: no answer in {timeout:g} s") from None

    def post(
        self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None
    ) -> Future[dict[str, Any]]:
        """Send one command and return a future of its result, without waiting for it.

        Event handlers (which run on the reader thread) must use this, not ``send``.
        """
        if self._closed:
            raise ProtocolError(f"{method}: the browser is closed")
        call_id = next(self._ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: Future[dict[str, Any]] = Future()
        future.set_running_or_notify_cancel()
        self._waiting[call_id] = future
        data = json.dumps(message).encode() + b"\0"
        try:
            with self._write_lock:
                while data:
                    data = data[os.write(self._to_browser, data) :]
        except OSError as error:
            self._waiting.pop(call_id, None)
            raise ProtocolError(f"{method}: cannot write to chromium ({error})") from None
        return future

    def _read(self) -> None:
        buffered = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffered += chunk
            *messages, buffered = buffered.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))
        for future in list(self._waiting.values()):  # chromium went away
            if not future.done():
                future.set_exception(ProtocolError("chromium closed its debugging pipe"))
        self._waiting.clear()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            future = self._waiting.pop(message["id"], None)
            if future is None:
                return
            if "error" in message:
                error = message["error"]
                future.set_exception(ProtocolError(f"{error.get('message')} ({error})"))
            else:
                future.set_result(message.get("result", {}))
            return
        handler = self._sessions.get(message.get("sessionId", ""))
        if handler is not None:
            handler(message["method"], message.get("params", {}))

    # -- pages --------------------------------------------------------------------------

    def new_page(self) -> Page:
        """Open a new tab on about:blank, in a browser context of its own (cookies and
        storage apart from every other page's); return it, its events recorded from the
        start."""
        context = self.send("Target.createBrowserContext")["browserContextId"]
        target = self.send(
            "Target.createTarget", {"url": "about:blank", "browserContextId": context}
        )["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, target, session["sessionId"], context)
        self._sessions[page.session_id] = page._on_event
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        return page

    def close(self) -> None:
        """Ask the browser to quit (it then removes what it made under TMPDIR, such as
        its ``org.chromium.Chromium.*`` directory), then kill its whole process group,
        whatever is left of it, and close the pipe; safe to call twice."""
        if self._closed:
            return
        with contextlib.suppress(ProtocolError):
            self.post("Browser.close")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        self._closed = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        os.close(self._to_browser)
        self._reader.join(timeout=10)
        os.close(self._from_browser)


class Page:
    """One tab: navigate, run JavaScript, click, take screenshots; what went wrong is kept.

    ``dialogs`` holds every JavaScript dialog that opened (its type and message; each is
    dismissed at once) and ``errors`` every console error, uncaught exception and error
    log entry, as PageError, oldest first.
    """

    def __init__(self, browser: Browser, target_id: str, session_id: str, context_id: str):
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id
        self.context_id = context_id
        self.dialogs: list[dict[str, str]] = []
        self.errors: list[PageError] = []
        self._loads = 0
        self._loaded = threading.Condition()

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = CALL_TIMEOUT
    ) -> dict[str, Any]:
        """Send a command to this page's session; return its result."""
        return self.browser.send(method, params, self.session_id, timeout)

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            with self._loaded:
                self._loads += 1
                self._loaded.notify_all()
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append({"type": params.get("type", ""), "message": params["message"]})
            self.browser.post("Page.handleJavaScriptDialog", {"accept": False}, self.session_id)
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(_describe(argument) for argument in params.get("args", []))
            self.errors.append(PageError("console", text, _top_frame_url(params)))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.errors.append(PageError("exception", text, details.get("url", "")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(
                PageError("log", entry.get("text", ""), entry.get("url", ""), entry["source"])
            )

    def goto(self, url: str, timeout: float = CALL_TIMEOUT) -> None:
        """Load ``url`` and return once its load event fired (at once for a change of the
        fragment only, which loads no document)."""
        with self._loaded:
            loads = self._loads
        result = self.send("Page.navigate", {"url": url}, timeout)
        if result.get("errorText"):
            raise ProtocolError(f"cannot load {url}: {result['errorText']}")
        if "loaderId" not in result:  # a same-document navigation
            return
        with self._loaded:
            if not self._loaded.wait_for(lambda: self._loads > loads, timeout):
                raise TimeoutError(f"{url} did not finish loading in {timeout:g} s")

    def evaluate(self, expression: str, timeout: float = CALL_TIMEOUT) -> Any:
        """Return the value of a JavaScript expression (promises awaited), as JSON gives it
        back (None for undefined); raise JavaScriptError if it throws."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            raise JavaScriptError(f"{text}\n  in: {expression}")
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Return the first truthy value of the JavaScript expression ``condition`` (True
        for an element), asked every ``interval`` seconds; raise TimeoutError after
        ``timeout`` seconds.

        Errors while asking (a page between two documents) count as not yet."""
        # truth as JavaScript sees it (an element is true, though it comes back as {})
        asked = (
            f"(async () => {{ const value = await ({condition});"
            " return [!!value, value instanceof Node ? true : value]; })()"
        )
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                true, last = self.evaluate(asked)
                if true:
                    return last
            except (JavaScriptError, ProtocolError) as error:
                last = error
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"not true within {timeout:g} s: {condition} (last: {last!r}); "
                    f"page errors: {[str(error) for error in self.errors]}"
                )
            time.sleep(interval)

    def click(self, selector: str) -> None:
        """Click the centre of the first element matching the CSS ``selector`` with the
        mouse, as a person would: scrolled into view, pressed and released there. Fail if
        no element matches or another element covers that point."""
        where = self.evaluate(
            f"""(() => {{
                const element = document.querySelector({json.dumps(selector)});
                if (!element) return null;
                element.scrollIntoView({{block: "center", inline: "center"}});
                const box = element.getBoundingClientRect();
                const x = box.left + box.width / 2, y = box.top + box.height / 2;
                const hit = document.elementFromPoint(x, y);
                return {{x, y, width: box.width, height: box.height,
                         reachable: !!hit && (hit === element || element.contains(hit)),
                         hit: hit ? hit.outerHTML.slice(0, 120) : null}};
            }})()"""
        )
        if where is None:
            raise LookupError(f"no element matches {selector!r}")
        if not where["width"] or not where["height"]:
            raise LookupError(f"{selector!r} is not displayed (its box is empty)")
        if not where["reachable"]:
            raise LookupError(f"{selector!r} is covered at its centre by {where['hit']}")
        point = {"x": where["x"], "y": where["y"]}
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", **point})
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "button": "left", "buttons": 1, "clickCount": 1, **point},
            )

    def screenshot(self, path: str | os.PathLike[str]) -> Path:
        """Write a PNG of the visible part of the page to ``path``; return the path."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close this tab and drop its browser context."""
        self.browser._sessions.pop(self.session_id, None)
        self.browser.send("Target.closeTarget", {"targetId": self.target_id})
        self.browser.send("Target.disposeBrowserContext", {"browserContextId": self.context_id})


def _pipe_above(lowest: int) -> tuple[int, int]:
    """Return a pipe (read end, write end) whose descriptors are at least ``lowest``, so
    that putting them on 3 and 4 in the child cannot overwrite one with the other."""
    reading, writing = os.pipe()
    try:
        return (
            fcntl.fcntl(reading, fcntl.F_DUPFD_CLOEXEC, lowest),
            fcntl.fcntl(writing, fcntl.F_DUPFD_CLOEXEC, lowest),
        )
    finally:
        os.close(reading)
        os.close(writing)


def _describe(argument: dict[str, Any]) -> str:
    if "value" in argument:
        return str(argument["value"])
    return str(argument.get("description", argument.get("type", "")))


def _top_frame_url(params: dict[str, Any]) -> str:
    frames = params.get("stackTrace", {}).get("callFrames", [])
    return frames[0].get("url", "") if frames else ""


def chromium_available(chromium: Path = CHROMIUM) -> bool:
    """Whether Chromium is installed where ``Browser.start`` looks for it."""
    return os.access(chromium, os.X_OK)
