"""The command ``orchestra ui``: serve the project's run database to a browser until
Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import errno
import secrets
import signal
import sys
import threading
from pathlib import Path

import click

import orchestra

#: the signals that stop the server (cleanly, exit 0)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class UiError(click.ClickException):
    """A mistake in how ``orchestra ui`` was called: one line on stderr, exit 2."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"orchestra ui: {self.format_message()}", err=True)


@click.command("ui")
@click.option("--db", type=click.Path(dir_okay=False), help="The run database to serve.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on (a loopback one unless there is a token).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="The port to listen on (0: a free one).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@click.option(
    "--token",
    envvar="ORCHESTRA_UI_TOKEN",
    metavar="TEXT",
    help="The token the page needs (default: a random one; or ORCHESTRA_UI_TOKEN).",
)
@click.option(
    "--no-token",
    is_flag=True,
    help="Need no token (on a loopback address only).",
)
@click.pass_context
def ui(
    ctx: click.Context,
    db: str | None,
    host: str,
    port: int,
    open_browser: bool,
    token: str | None,
    no_token: bool,
) -> None:
    """Watch and steer runs in the browser: the runs, a run's graph, timeline and
    totals, each task's attempts, logs and diffs, live while they run; cancel a
    running run, resume an interrupted one.

    Serves the project's run database on 127.0.0.1 and prints the address to open,
    with the session's token: every request needs it (the link sets it as a cookie).
    """
    from orchestra_ui.server import UiServer

    token = _session_token(ctx, host, token, no_token)
    database = orchestra.run_database_path(db)
    store = orchestra.open_run_database(database)
    try:
        server = UiServer(database, store, host, port, token, workdir=Path.cwd())
    except OSError as error:
        store.close()
        reason = error.strerror or str(error)
        if error.errno == errno.EADDRINUSE:
            reason = "the port is in use (choose another with --port, or 0 for a free one)"
        raise UiError(f"cannot listen on {host}:{port}: {reason}") from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="orchestra-ui-serve"
    )
    serving.start()
    try:
        click.echo(f"orchestra ui: serving {database} at {server.url} (Ctrl-C to stop)")
        sys.stdout.flush()
        server.warm_up()
        if open_browser:
            import webbrowser

            webbrowser.open(server.url)
        while not stop.wait(0.5):
            pass
    finally:
        server.close()
        serving.join()
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _session_token(ctx: click.Context, host: str, token: str | None, no_token: bool) -> str | None:
    """Return the token every request must carry: the one given, a new random one, or
    None with ``--no-token`` (refused on an address other machines can reach)."""
    from orchestra_ui.server import is_loopback

    given_here = ctx.get_parameter_source("token") == click.core.ParameterSource.COMMANDLINE
    if no_token and given_here:
        raise UiError("--token and --no-token cannot be given together")
    if no_token:
        if not is_loopback(host):
            raise UiError(
                f"--host {host} is not a loopback address: a token is required there"
                " (drop --no-token)"
            )
        return None
    if token is not None and not token.strip():
        raise UiError("the token is empty: give one, or --no-token on a loopback address")
    return token if token is not None else secrets.token_urlsafe(24)
