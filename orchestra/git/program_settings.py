"""The settings of a repository's configuration that name a program, or say where git
finds its settings and work tree, kept as a run found them.

A task that runs without a sandbox can write the files of settings git reads for the
repository, and a program named there (``core.fsmonitor``, a filter, an alias starting
with ``!``) is what the user's own next ``git status`` runs. Those files are ``config``
in the git directory, ``config.worktree`` there and in each ``worktrees/<name>/`` (read
once ``extensions.worktreeConfig`` is on), and every file one of them includes
(``include.path``, ``includeIf.<condition>.path``). orchestra's git neutralises such
settings for itself (``orchestra.git.command``); for the user's git, ``SettingsGuard``
notes them when a run starts and, after each attempt, puts back any that changed. The
rest of each file is the user's: a setting they change meanwhile stays. A file is
written by ``git config`` itself, which takes git's lock (``<file>.lock``) and keeps the
file's mode.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

import attrs

from orchestra.git.command import GitError, common_dir, run_git

# The keys (as ``git config --list`` spells them: section and name in lower case) whose
# value is a program git runs, a command line, or a file of settings that can name one.
PROGRAM_KEYS = re.compile(
    r"""^(?:
      core\.(?:hookspath|fsmonitor|sshcommand|editor|pager|askpass|gitproxy
              |alternaterefscommand|attributesfile)
    | sequence\.editor | diff\.external | interactive\.difffilter | web\.browser
    | include\.path | includeif\..+\.path
    | alias\..+ | pager\..+ | hook\..+
    | credential\.(?:.+\.)?helper | gpg\.(?:.+\.)?program
    | filter\..+\.(?:clean|smudge|process) | merge\..+\.driver
    | diff\..+\.(?:command|textconv)
    | (?:mergetool|difftool|browser|man|guitool)\..+\.(?:cmd|path)
    | remote\..+\.(?:uploadpack|receivepack|vcs) | submodule\..+\.update
    | protocol\.(?:.+\.)?allow | trailer\..+\.(?:cmd|command)
    | sendemail\.(?:.+\.)?(?:smtpserver|sendmailcmd|tocmd|cccmd|headercmd)
    | uploadpack\.packobjectshook
    )$""",
    re.VERBOSE,
)

# The keys that say where git finds the repository's settings and work tree: an
# extension changes how the repository is read (``extensions.worktreeconfig`` turns the
# ``config.worktree`` files on); ``core.worktree`` and ``core.bare`` move the user's
# checkout elsewhere or take it away.
LOCATION_KEYS = re.compile(r"^(?:extensions\..+|core\.(?:worktree|bare))$")

# The keys whose values name another file of settings, read as part of the one naming it.
INCLUDE_KEYS = re.compile(r"^(?:include\.path|includeif\..+\.path)$")

Settings = tuple[tuple[str, str], ...]


def guarded_settings(repo: Path, path: Path) -> Settings:
    """Return the (key, value) entries of configuration file ``path`` that name a
    program (``PROGRAM_KEYS``) or where git finds things (``LOCATION_KEYS``), in the
    file's order; GitError when git cannot read it."""
    listed = run_git(repo, "config", "--file", str(path), "--no-includes", "--null", "--list")
    entries = []
    for record in listed.stdout.split("\0"):
        key, _, value = record.partition("\n")
        if key and (PROGRAM_KEYS.match(key) or LOCATION_KEYS.match(key)):
            entries.append((key, value))
    return tuple(entries)


def watched_keys(repo: Path, path: Path) -> str:
    """The keys of configuration file ``path`` that the guard watches (programs, where
    git finds things) or that bring in another file (includes), comma-separated; ""
    when none. GitError when git cannot read it."""
    listed = run_git(repo, "config", "--file", str(path), "--no-includes", "--null", "--list")
    keys = []
    for record in listed.stdout.split("\0"):
        key = record.partition("\n")[0]
        if key and any(
            pattern.match(key) for pattern in (PROGRAM_KEYS, LOCATION_KEYS, INCLUDE_KEYS)
        ):
            keys.append(key)
    return ", ".join(dict.fromkeys(keys))


@attrs.define
class _Watched:
    """One file of settings: its guarded settings as the run found them (``()`` when
    there was no such file; None when git could not read it: nothing to hold it to),
    the file as last checked, and as last found readable (None: there was none)."""

    path: Path
    kept: Settings | None
    seen: bytes | None
    sound: bytes | None


class SettingsGuard:
    """The guarded settings of the files of settings git reads for a repository, as a
    run found them; ``check`` puts back any change to them (call it after each attempt,
    from any thread)."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        #: the repository's git directory, where the files of settings are (the ones
        #: it includes may be anywhere)
        self.path = common_dir(repo)
        self._lock = threading.Lock()
        self._watched: dict[Path, _Watched] = {}
        waiting = [self.path / "config", self.path / "config.worktree", *self._worktree_files()]
        while waiting:  # and the files they include, and the files those include …
            path = waiting.pop(0)
            if path not in self._watched:
                watched = self._watched[path] = self._found(path)
                for key, value in watched.kept or ():
                    if INCLUDE_KEYS.match(key):
                        waiting.append(_included(path, value))

    def check(self) -> str | None:
        """Put back the guarded settings changed since the run started; return what
        changed and what became of it (to follow "the configuration was changed while
        the attempt ran"), or None when none did."""
        with self._lock:
            for path in self._worktree_files():  # a worktree added since
                if path not in self._watched:
                    self._watched[path] = _Watched(path, self._copied(), None, None)
            said = []
            # config first: it says how git reads the rest
            for watched in list(self._watched.values()):
                if _belongs_to_a_removed_worktree(self.path, watched.path):
                    del self._watched[watched.path]
                    continue
                problem = self._check_file(watched)
                if problem:
                    said.append(f"{self._name(watched.path)}: {problem}")
            return f"({'; '.join(said)})" if said else None

    def _check_file(self, watched: _Watched) -> str | None:
        """Put back the guarded settings of one file; say what became of them, or None
        when none changed."""
        now = _read_bytes(watched.path)
        if now == watched.seen or watched.kept is None:
            return None
        if now is None and not watched.kept:
            # gone, and it named nothing of the kind when the run started: a later one
            # is held to that (no file)
            watched.seen = watched.sound = None
            return None
        found = self._read(watched.path) if now is not None else None
        if found is None:
            return self._put_back_whole(watched)
        changed = _changed_keys(watched.kept, found)
        for key in changed:
            self._put_back(watched, key)
        watched.seen = watched.sound = _read_bytes(watched.path)
        if not changed:
            return None  # the user's own edit, of something else
        which = "name programs"
        if not all(PROGRAM_KEYS.match(key) for key in changed):
            which += " or where git finds its settings and work tree"
        return f"orchestra put back {', '.join(changed)}, which {which}, as the run found them"

    def _put_back_whole(self, watched: _Watched) -> str:
        """Put back a file git cannot read (or that is gone), which the user's git cannot
        read either: the whole file as last seen readable, or no file when the run found
        none."""
        try:
            if watched.sound is None:
                watched.path.unlink(missing_ok=True)
            else:
                _replace_through_lock(watched.path, watched.sound)
        except OSError as error:  # tried again at the next check
            return f"git cannot read it, and orchestra could not put it back: {error}"
        watched.seen = _read_bytes(watched.path)
        if watched.sound is None:
            return "git could not read it, and the run found none: orchestra removed it"
        return "git could not read it, so orchestra put it back as it last read it"

    def _found(self, path: Path) -> _Watched:
        """``path`` as the run finds it."""
        seen = _read_bytes(path)
        if seen is None:
            return _Watched(path, (), None, None)
        kept = self._read(path)
        return _Watched(path, kept, seen, seen if kept is not None else None)

    def _copied(self) -> Settings:
        """The guarded settings a worktree added during the run starts with: ``git
        worktree add`` copies the main worktree's ``config.worktree`` into it (when
        ``extensions.worktreeConfig`` is on), less ``core.worktree`` and a true
        ``core.bare``."""
        main = self._watched[self.path / "config.worktree"].kept or ()
        return tuple(
            (key, value)
            for key, value in main
            if key != "core.worktree" and not (key == "core.bare" and _true(value))
        )

    def _read(self, path: Path) -> Settings | None:
        try:
            return guarded_settings(self.repo, path)
        except GitError:
            return None

    def _put_back(self, watched: _Watched, key: str) -> None:
        """Give ``key`` in the file the values it had when the run started."""
        where = ("config", "--file", str(watched.path))
        removed = run_git(self.repo, *where, "--unset-all", key, check=False)
        if removed.returncode not in (0, 5):  # 5: there was none
            raise GitError(f"could not put back {key} in {watched.path}: {removed.stderr.strip()}")
        for kept_key, value in watched.kept or ():
            if kept_key == key:
                run_git(self.repo, *where, "--add", key, value)

    def _worktree_files(self) -> list[Path]:
        """The ``config.worktree`` of each linked worktree the repository has now."""
        try:
            names = sorted(os.listdir(self.path / "worktrees"))
        except OSError:
            return []
        return [self.path / "worktrees" / name / "config.worktree" for name in names]

    def _name(self, path: Path) -> str:
        """``path`` as the messages name it: within the git directory when it is there."""
        return str(path.relative_to(self.path)) if path.is_relative_to(self.path) else str(path)


def _included(path: Path, value: str) -> Path:
    """The file an include in ``path`` names: ``~/`` is the home directory, and a
    relative path is relative to the directory of ``path`` (as git reads it)."""
    target = Path(os.path.expanduser(value))
    return target if target.is_absolute() else path.parent / target


def _true(value: str) -> bool:
    """Whether git reads ``value`` as a true boolean (no value at all is true)."""
    if value.lower() in ("", "true", "yes", "on"):
        return True
    try:
        return int(value) != 0
    except ValueError:
        return False


def _belongs_to_a_removed_worktree(git_dir: Path, path: Path) -> bool:
    """Whether ``path`` is the ``config.worktree`` of a linked worktree no longer there
    (removed by orchestra at an attempt's end, or by the user): nothing to guard."""
    return path.parent.parent == git_dir / "worktrees" and not path.parent.is_dir()


def _changed_keys(kept: Settings, found: Settings) -> list[str]:
    """The keys whose values (in order) differ between ``kept`` and ``found``, sorted."""
    keys = {key for key, _ in kept} | {key for key, _ in found}

    def values(settings: Settings, key: str) -> list[str]:
        return [value for name, value in settings if name == key]

    return sorted(key for key in keys if values(kept, key) != values(found, key))


def _replace_through_lock(path: Path, content: bytes) -> None:
    """Write ``content`` as ``path`` the way git does: into ``<path>.lock``, made
    exclusively (a live git holding it makes this fail: FileExistsError), then renamed
    over ``path``; the file keeps its mode."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o644
    lock = path.with_name(path.name + ".lock")
    descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)  # as it was, whatever the umask
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(lock, path)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
