"""The database schema, as an ordered list of migrations.

Each migration is a function that takes the connection and changes the schema. They are
applied in the order they are listed here, each once, each in its own transaction, and
each is recorded by name in ``_migrations``. A database written by an older orchestra
therefore opens in a newer one: the newer one applies what is missing. Never edit or
reorder a migration that has shipped; add a new one at the end.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence

from orchestra.store.errors import SchemaTooNew

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = []


def migration(function: Migration) -> Migration:
    """Add ``function`` to the end of MIGRATIONS and return it."""
    MIGRATIONS.append(function)
    return function


def migrate(
    connection: sqlite3.Connection,
    migrations: Sequence[Migration] | None = None,
    *,
    file: str | None = None,
) -> list[str]:
    """Apply the migrations the database lacks, in order; return the names applied.

    ``connection`` must be in autocommit mode (``isolation_level=None``): the migrations
    run between one explicit ``BEGIN IMMEDIATE`` and ``COMMIT``, so two processes that
    open the same new database at once do not both apply one, and all of them land or
    none does.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    connection.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    known = {function.__name__ for function in MIGRATIONS}
    recorded = {name for (name,) in connection.execute("SELECT name FROM _migrations")}
    if recorded - known:
        unknown = ", ".join(sorted(recorded - known))
        raise SchemaTooNew(
            f"the database was written by a newer orchestra (migrations {unknown});"
            " upgrade orchestra to use it",
            file=file,
        )
    applied: list[str] = []
    if all(function.__name__ in recorded for function in migrations):
        return applied  # committed already: no write lock to take (every later command)
    # One transaction for all the migrations a database lacks, the write lock taken
    # first: two processes opening the same new database do not both apply one, and a
    # migration that fails leaves the database as it was. (One commit instead of one
    # per migration: a project's first command makes its database 0.25 ms sooner.)
    connection.execute("BEGIN IMMEDIATE")
    try:
        done = {name for (name,) in connection.execute("SELECT name FROM _migrations")}
        for function in migrations:
            if function.__name__ not in done:
                function(connection)
                connection.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    (function.__name__, time.time()),
                )
                applied.append(function.__name__)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return applied


@migration
def m001_initial(connection: sqlite3.Connection) -> None:
    # Timestamps are time.time() seconds (REAL); JSON columns hold TEXT written by json.dumps.
    # Nothing here may hold a secret: the store is handed text that is already redacted.
    statements = """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        workstream_id TEXT NOT NULL,
        workstream_file TEXT,
        content_hash TEXT,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        owner_pid INTEGER,
        owner_host TEXT,
        settings TEXT NOT NULL DEFAULT '{}',
        error TEXT
    );
    CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        task_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        started_at REAL,
        ended_at REAL,
        PRIMARY KEY (run_id, task_id)
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        tool TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        exit_code INTEGER,
        outcome TEXT,
        error_class TEXT,
        message TEXT,
        retry_after REAL,
        input_tokens INTEGER,
        cached_input_tokens INTEGER,
        output_tokens INTEGER,
        cost_usd REAL,
        log_path TEXT,
        diff TEXT,
        command TEXT,
        UNIQUE (run_id, task_id, number),
        FOREIGN KEY (run_id, task_id) REFERENCES steps(run_id, task_id) ON DELETE CASCADE
    );
    CREATE TABLE events (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        task_id TEXT,
        attempt INTEGER,
        type TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, seq),
        FOREIGN KEY (run_id, task_id) REFERENCES steps(run_id, task_id) ON DELETE CASCADE
    );
    CREATE TABLE breakers (
        tool TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0,
        opened_at REAL,
        last_error_class TEXT,
        updated_at REAL NOT NULL
    );
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """
    for statement in statements.split(";"):
        if statement.strip():
            connection.execute(statement)


@migration
def m002_history_indexes(connection: sqlite3.Connection) -> None:
    # `orchestra runs` lists newest first; routing reads each tool's track record.
    connection.execute("CREATE INDEX runs_by_created_at ON runs (created_at)")
    connection.execute("CREATE INDEX attempts_by_tool ON attempts (tool, ended_at)")


@migration
def m003_leaner_writes(connection: sqlite3.Connection) -> None:
    # The version of the tool that made each attempt (aider 0.86.2 …).
    connection.execute("ALTER TABLE attempts ADD COLUMN tool_version TEXT")
    # The track-record index without ended_at: finishing an attempt leaves it untouched.
    connection.execute("DROP INDEX attempts_by_tool")
    connection.execute("CREATE INDEX attempts_by_tool ON attempts (tool)")
    # Events kept in their primary key's order, one b-tree instead of a table and an
    # index: every commit of a run writes a page fewer. Nothing references events.
    connection.execute(
        """
        CREATE TABLE events_by_seq (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            at REAL NOT NULL,
            task_id TEXT,
            attempt INTEGER,
            type TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (run_id, seq),
            FOREIGN KEY (run_id, task_id) REFERENCES steps(run_id, task_id) ON DELETE CASCADE
        ) WITHOUT ROWID
        """
    )
    connection.execute(
        "INSERT INTO events_by_seq (run_id, seq, at, task_id, attempt, type, payload)"
        " SELECT run_id, seq, at, task_id, attempt, type, payload FROM events"
    )
    connection.execute("DROP TABLE events")
    connection.execute("ALTER TABLE events_by_seq RENAME TO events")


@migration
def m004_resilience(connection: sqlite3.Connection) -> None:
    # What the routing and resilience of a run need to survive a resume: why the tool
    # was chosen, the capabilities the task asked for (the track record routing reads),
    # what the next attempt is told to fix, the failure's fingerprint (loop breaker),
    # and until when an open breaker keeps its tool out.
    connection.execute("ALTER TABLE attempts ADD COLUMN route_reason TEXT")
    connection.execute("ALTER TABLE attempts ADD COLUMN capabilities TEXT")
    connection.execute("ALTER TABLE attempts ADD COLUMN feedback TEXT")
    connection.execute("ALTER TABLE attempts ADD COLUMN fingerprint TEXT")
    connection.execute("ALTER TABLE breakers ADD COLUMN open_until REAL")
    # Every index on attempts costs each commit of a run a page: the run loop reads the
    # track record once per run and keeps it up to date itself.
    connection.execute("DROP INDEX attempts_by_tool")


@migration
def m005_reviews(connection: sqlite3.Connection) -> None:
    # A second tool's review of an attempt's change before it lands (docs/reviews.md):
    # one row per review, beside the attempt it read. Its usage counts toward the run's
    # and the task's budgets with the attempts'. Comments and edits are redacted first.
    connection.execute(
        """
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            task_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            round INTEGER NOT NULL,
            tool TEXT NOT NULL,
            tool_version TEXT,
            route_reason TEXT,
            started_at REAL,
            ended_at REAL,
            outcome TEXT NOT NULL,
            verdict TEXT,
            comments TEXT,
            error_class TEXT,
            message TEXT,
            retry_after REAL,
            input_tokens INTEGER,
            cached_input_tokens INTEGER,
            output_tokens INTEGER,
            cost_usd REAL,
            log_path TEXT,
            edits TEXT,
            landed INTEGER NOT NULL DEFAULT 0,
            UNIQUE (run_id, task_id, attempt),
            FOREIGN KEY (run_id, task_id) REFERENCES steps(run_id, task_id) ON DELETE CASCADE
        )
        """
    )


@migration
def m006_run_project_root(connection: sqlite3.Connection) -> None:
    # The directory a run works in (its project root): resume goes on there, wherever it
    # is started from (``--db``, ORCHESTRA_DB). NULL for runs an older orchestra made.
    connection.execute("ALTER TABLE runs ADD COLUMN project_root TEXT")
