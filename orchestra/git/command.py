"""Running ``git`` for orchestra, in the user's repository, safely.

The repository is the user's, and an attempt that runs without a sandbox can write its
``.git/config``: whatever programs that configuration names, orchestra's own git commands
must not start, and whatever orchestra's environment holds (the provider keys its tools
get), git must not see. So every command runs:

- with an argument list (never a shell), stdin from /dev/null (or what orchestra gives
  it), and ``-c`` options that neutralise the programs a configuration can name: hooks
  (``core.hooksPath=/dev/null``), ``core.fsmonitor``, ``core.sshCommand``, signing,
  submodule recursion, and every clean or smudge filter (content passes through) and
  merge driver (a conflict instead) the configuration defines. Editors and pagers are
  turned off through the environment, and the functions that make diffs pass
  ``--no-ext-diff --no-textconv``;
- with an environment of its own: an allow-list (``PATH``, ``HOME``, locale, ``TMPDIR``,
  the user's git identity and configuration-location variables), so no provider key and
  none of the variables that point git at another repository get through;
- in a worktree, addressed by its git directory (``Tree``) rather than found through the
  ``.git`` file in it, which an attempt could point at the user's repository;
- and a command refused because a git lock file exists waits for the lock (up to
  ``LOCK_WAIT`` seconds), or, when no live process can hold it, removes it as what a
  killed git left behind and tries again (``orchestra.git.locks``).

A failing command raises ``GitError`` naming it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
from pathlib import Path

from orchestra import classes
from orchestra.errors import OrchestraError

# Hooks of the user's repository must not run inside orchestra's worktrees, a signing
# prompt would hang a run, and autocrlf would make a worktree differ from its commit. An
# automatic gc could start in the background while other threads write objects and
# outlive the run; the user's own next git command does it instead. The rest name
# programs: a repository's configuration must not get orchestra to start any.
BASE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.sshCommand=false",
    "core.autocrlf=false",
    "commit.gpgsign=false",
    "tag.gpgsign=false",
    "credential.helper=",
    "submodule.recurse=false",
    "gc.auto=0",
    "maintenance.auto=false",
)

#: variables of orchestra's environment git gets (plus ``LC_*``): where programs and the
#: user's configuration are, the locale, and the user's commit identity
PASSED_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "TZ",
        "TMPDIR",
        "USER",
        "LOGNAME",
        "EMAIL",
        "XDG_CONFIG_HOME",
        "GIT_EXEC_PATH",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
    }
)

#: what orchestra sets for every git it runs: no prompts, output in the C locale, no
#: opportunistic index locks from reading commands (a tool may be running git in the same
#: worktree), and no editor or pager
FIXED_VARIABLES = {
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_EDITOR": ":",
    "GIT_SEQUENCE_EDITOR": ":",
    "GIT_PAGER": "cat",
}

#: options for every command that shows file contents as a diff
DIFF_PROGRAMS_OFF = ("--no-ext-diff", "--no-textconv")

#: how long a command waits for a git lock a live process holds
LOCK_WAIT = 10.0


class GitError(OrchestraError):
    """A git command that failed; the message names it and quotes git's error."""

    def __init__(
        self,
        message: str,
        *,
        command: tuple[str, ...] = (),
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.stderr = stderr


@classes.frozen
class Tree:
    """A worktree addressed by its own git directory (``.git/worktrees/<name>``).

    git finds a worktree's repository through the ``.git`` file at its top, and an attempt
    may rewrite that file; orchestra's commands in an attempt's worktree give git the
    directory it recorded when it made the worktree instead.
    """

    path: Path
    git_dir: Path
    #: the repository's common git directory, given to git too (``GIT_COMMON_DIR``), so
    #: that the worktree's ``commondir`` file, which an attempt could rewrite, is not read
    common: Path | None = None

    def __fspath__(self) -> str:
        return str(self.path)


Where = Path | Tree


def environment() -> dict[str, str]:
    """The environment of every git orchestra runs (see the module's docstring)."""
    passed = {
        name: value
        for name, value in os.environ.items()
        if name in PASSED_VARIABLES or name.startswith("LC_")
    }
    passed.update(FIXED_VARIABLES)
    return passed


def describe(arguments: tuple[str, ...]) -> str:
    """Return the command as a person would type it, long arguments shortened."""
    shown = [argument if len(argument) <= 60 else argument[:57] + "..." for argument in arguments]
    return shlex.join(["git", *shown])


def failure(
    cwd: Where, arguments: tuple[str, ...], returncode: int | None, stderr: str, stdout: str = ""
) -> GitError:
    """A GitError naming the command, where it ran, and git's first lines of complaint."""
    text = stderr.strip() or stdout.strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()][:3]
    reason = " / ".join(lines) if lines else "no message"
    return GitError(
        f"{describe(arguments)} failed in {_path(cwd)} (exit {returncode}): {reason}",
        command=("git", *arguments),
        returncode=returncode,
        stderr=stderr,
    )


def git_invocation(where: Where, *arguments: str) -> tuple[list[str], dict[str, str]]:
    """Return the argument list and the environment with which orchestra runs ``git
    ARGUMENTS`` in ``where`` (see the module's docstring), for a caller that must run it
    itself (to give it stdin, say). Run it with ``cwd=where`` and stdin that is not a
    terminal."""
    command = ["git", *_settings((*BASE_CONFIG, *driver_settings(where))), *arguments]
    env = environment()
    if isinstance(where, Tree):
        env.update(_tree_variables(where))
    return command, env


def run_git(
    where: Where,
    *arguments: str,
    config: tuple[str, ...] = (),
    check: bool = True,
    errors: str = "surrogateescape",
    wait_for_locks: bool = True,
    index: Path | None = None,
    input: str | None = None,
    variables: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one git command in ``where`` and return it; raise GitError if it fails and
    ``check``.

    ``errors="surrogateescape"`` keeps file names that are not UTF-8 round-trippable, as
    ``os.fsdecode`` does; a diff meant to be read and stored uses ``"replace"``.
    ``wait_for_locks=False`` is for commands that must not simply be run again after
    failing on a lock half-way (a rebase): their caller decides. ``index`` is an index
    file of the caller's to use instead of the work tree's (``GIT_INDEX_FILE``), so that
    a snapshot of the work tree leaves its own index alone. ``input`` is the command's
    stdin (``cat-file --batch``), nothing otherwise; ``variables`` are set in its
    environment (a commit's author, ``GIT_AUTHOR_*``).
    """
    command, env = git_invocation(where, *_settings(config), *arguments)
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    env.update(variables or {})
    waited_until: float | None = None
    while True:
        completed = _run(command, where, env, errors, input)
        if completed.returncode == 0 or not wait_for_locks:
            break
        from orchestra.git import locks

        lock = locks.lock_in(completed.stderr, _working_directory(where))
        if lock is None:
            break
        # every turn counts against one deadline: a lock git keeps reporting that cannot
        # be removed (gone when looked at, or not a file) must not make this spin
        now = time.monotonic()
        waited_until = waited_until or now + LOCK_WAIT
        if now >= waited_until:
            break
        if lock.exists() and locks.remove_if_stale(lock, _places(where)):
            continue  # a killed git's: removed, so at once again
        time.sleep(0.05)  # held by a live process, or released meanwhile
    if check and completed.returncode != 0:
        raise failure(where, arguments, completed.returncode, completed.stderr, completed.stdout)
    return completed


def _run(
    command: list[str], where: Where, env: dict[str, str], errors: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            cwd=_path(where),
            env=env,
            stdin=subprocess.DEVNULL if input is None else None,
            input=input,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors=errors,
        )
    except OSError as error:  # no git on PATH, or cwd is gone
        arguments = tuple(command[1:])
        raise GitError(f"{describe(arguments)} could not run in {_path(where)}: {error}") from error


def _tree_variables(tree: Tree) -> dict[str, str]:
    variables = {"GIT_DIR": str(tree.git_dir), "GIT_WORK_TREE": str(tree.path)}
    if tree.common is not None:
        variables["GIT_COMMON_DIR"] = str(tree.common)
    return variables


def _path(where: Where) -> Path:
    return where.path if isinstance(where, Tree) else Path(where)


def _working_directory(where: Where) -> Path:
    """The directory git works in after finding the repository from ``where``, to which
    the relative paths in its messages are relative: the top of the work tree (git goes
    there from a subdirectory), or the git directory when git ran in one."""
    start = _path(where).absolute()
    if isinstance(where, Tree):
        return start  # GIT_WORK_TREE: git works at its top
    for directory in (start, *start.parents):
        if os.path.lexists(directory / ".git"):
            return directory
        if (directory / "HEAD").is_file() and (directory / "objects").is_dir():
            return directory  # a git directory itself
    return start


# -- the common git directory --

_COMMON_DIRS: dict[str, Path] = {}


def common_dir(where: Where) -> Path:
    """Return the repository's common git directory (``.git`` of the main worktree)."""
    key = str(where.git_dir) if isinstance(where, Tree) else str(where)
    if key not in _COMMON_DIRS:
        if isinstance(where, Tree) and where.common is not None:
            found = where.common
        elif isinstance(where, Tree):
            found = (where.git_dir / (read_record(where.git_dir / "commondir") or ".")).resolve()
        else:
            arguments = ["rev-parse", "--path-format=absolute", "--git-common-dir"]
            completed = _run(
                ["git", *_settings(BASE_CONFIG), *arguments], where, environment(), "strict"
            )
            if completed.returncode != 0:
                raise failure(where, tuple(arguments), completed.returncode, completed.stderr)
            found = Path(completed.stdout.strip())
        _COMMON_DIRS[key] = found
    return _COMMON_DIRS[key]


def _places(where: Where) -> tuple[Path, ...]:
    """Where a git process holding one of this repository's locks would be working."""
    try:
        common = common_dir(where)
    except GitError:
        return (_path(where),)
    places = [_path(where), common, common.parent]
    for entry in entries(common / "worktrees"):
        gitdir = read_record(entry / "gitdir")
        if gitdir:
            places.append(Path(gitdir).parent)
    return tuple(places)


# -- programs the configuration names --

# the configuration's sections that name programs per driver, and what neutralises each
_DRIVER_SECTION = re.compile(r"^(filter|merge)\.(.+)\.[^.]+$")
#: the commit identity's keys, read with the drivers (``configured_identity``)
_IDENTITY_KEYS = frozenset({"user.name", "user.email"})
_DRIVERS_LOCK = threading.Lock()
#: files, each with what ``stat`` said of it (inode, size, mtime) or None when missing
Stamped = tuple[tuple[Path, tuple[int, int, int] | None], ...]
#: per repository: the (file, stat) pairs the answers were read from, and the answers
#: (the drivers' settings, the identity keys configured)
_DRIVERS: dict[str, tuple[Stamped, tuple[str, ...], frozenset[str]]] = {}


def driver_settings(where: Where) -> tuple[str, ...]:
    """The ``-c`` settings that neutralise every filter and merge driver the
    configuration defines: ``filter.X.clean``/``smudge``/``process`` empty (git then
    passes the content through) and ``required`` false; ``merge.X.driver`` ``false`` (a
    conflict instead of the program). Read again whenever a configuration file changes.
    """
    return _configuration(where)[1]


def configured_identity(where: Where) -> frozenset[str]:
    """Which of ``user.name`` and ``user.email`` the configuration sets (read with
    ``driver_settings``, so asking costs no git process of its own)."""
    return _configuration(where)[2]


def _configuration(where: Where) -> tuple[Stamped, tuple[str, ...], frozenset[str]]:
    """What orchestra reads of the configuration where ``where`` is: the drivers'
    settings and the identity keys, read once and again when a configuration file
    changes."""
    try:
        common = common_dir(where)
    except GitError:
        return (), (), frozenset()
    key = str(where.git_dir) if isinstance(where, Tree) else str(common)
    with _DRIVERS_LOCK:
        known = _DRIVERS.get(key)
        if known is not None and _stamp(known[0]) == known[0]:
            return known
    read = _read_configuration(where, common)
    with _DRIVERS_LOCK:
        _DRIVERS[key] = read
    return read


def _read_configuration(
    where: Where, common: Path
) -> tuple[Stamped, tuple[str, ...], frozenset[str]]:
    env = environment()
    if isinstance(where, Tree):
        env.update(_tree_variables(where))
    wanted = r"^(filter|merge)\.|^user\.(name|email)$"
    arguments = ["config", "--show-origin", "--null", "--get-regexp", wanted]
    completed = _run(["git", *_settings(BASE_CONFIG), *arguments], where, env, "surrogateescape")
    origins = {common / "config", *_global_files()}
    if isinstance(where, Tree):
        origins.add(where.git_dir / "config.worktree")
    filters: set[str] = set()
    merges: set[str] = set()
    identity: set[str] = set()
    # records: "file:<path>\0<key>\n<value>\0"
    fields = completed.stdout.split("\0")
    for origin, entry in zip(fields[0::2], fields[1::2], strict=False):  # a trailing ""
        if origin.startswith("file:"):
            origins.add(_working_directory(where) / origin[5:])  # relative to where git was
        key = entry.split("\n", 1)[0]
        if key in _IDENTITY_KEYS:
            identity.add(key)
            continue
        matched = _DRIVER_SECTION.match(key)
        if matched:
            (filters if matched.group(1) == "filter" else merges).add(matched.group(2))
    settings: list[str] = []
    for name in sorted(filters):
        settings += [f"filter.{name}.{part}=" for part in ("clean", "smudge", "process")]
        settings.append(f"filter.{name}.required=false")
    settings += [f"merge.{name}.driver=false" for name in sorted(merges)]
    files = _stamp(tuple((path, None) for path in sorted(origins)))
    return files, tuple(settings), frozenset(identity)


def _global_files() -> list[Path]:
    home = os.environ.get("HOME", "")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files = [Path("/etc/gitconfig"), Path(home) / ".gitconfig", Path(xdg) / "git" / "config"]
    for variable in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM"):
        if os.environ.get(variable):
            files.append(Path(os.environ[variable]))
    return files


def _stamp(files: Stamped) -> Stamped:
    """Each file with what ``stat`` says of it now (None when it is missing)."""
    stamped: list[tuple[Path, tuple[int, int, int] | None]] = []
    for path, _ in files:
        try:
            status = os.stat(path)
            stamped.append((path, (status.st_ino, status.st_size, status.st_mtime_ns)))
        except OSError:
            stamped.append((path, None))
    return tuple(stamped)


def _settings(options: tuple[str, ...]) -> list[str]:
    """``-c`` before each of ``options``, as git's command line takes them."""
    return [item for setting in options for item in ("-c", setting)]


def read_record(path: Path) -> str:
    """The text of one of git's small record files (``gitdir``, ``HEAD``), stripped; ""
    when it is missing or unreadable."""
    try:
        return path.read_text(errors="surrogateescape").strip()
    except (OSError, ValueError):
        return ""


def entries(directory: Path) -> list[Path]:
    """What ``directory`` holds, sorted; nothing when it is missing or unreadable."""
    try:
        return sorted(directory.iterdir())
    except OSError:
        return []
