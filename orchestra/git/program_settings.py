"""The settings of a repository's configuration that name a program, kept as a run found
them.

A task that runs without a sandbox can write the repository's ``.git/config``, and a
program named there (``core.fsmonitor``, a filter, an alias starting with ``!``) is what
the user's own next ``git status`` runs. orchestra's git neutralises such settings for
itself (``orchestra.git.command``); for the user's git, ``SettingsGuard`` notes
them when a run starts and, after each attempt, puts back any that changed. The rest of
the file is the user's: a setting they change meanwhile stays. The file is written by
``git config`` itself, which takes git's lock (``config.lock``) and keeps the file's mode.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

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

Settings = tuple[tuple[str, str], ...]


def program_settings(repo: Path, path: Path) -> Settings:
    """Return the (key, value) entries of configuration file ``path`` that name a
    program (``PROGRAM_KEYS``), in the file's order; GitError when git cannot read it."""
    listed = run_git(repo, "config", "--file", str(path), "--no-includes", "--null", "--list")
    entries = []
    for record in listed.stdout.split("\0"):
        key, _, value = record.partition("\n")
        if key and PROGRAM_KEYS.match(key):
            entries.append((key, value))
    return tuple(entries)


class SettingsGuard:
    """The program-naming settings of a repository's configuration as a run found them;
    ``check`` puts back any change to them (call it after each attempt, from any thread)."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.path = common_dir(repo) / "config"
        self._lock = threading.Lock()
        #: the file as last checked, so that an unchanged file costs no git process
        self._seen = _read_bytes(self.path)
        #: None when the file could not be read at the start: nothing to hold it to
        self._kept: Settings | None = self._read() if self._seen is not None else None
        #: the whole file as last found readable, for when it stops being (below)
        self._sound = self._seen if self._kept is not None else None

    def check(self) -> str | None:
        """Put back the program-naming settings changed since the run started; return
        what changed and what became of it (to follow "the configuration was changed
        while the attempt ran"), or None when none did."""
        with self._lock:
            if self._kept is None:
                return None
            now = _read_bytes(self.path)
            if now == self._seen:
                return None
            found = self._read() if now is not None else None
            if found is None:
                # git cannot read it (or it is gone), nor can the user's git: only the
                # whole file as last seen readable can be put back
                try:
                    _replace_through_lock(self.path, self._sound or b"")
                except OSError as error:
                    return f"(git cannot read it): orchestra could not put it back: {error}"
                self._seen = _read_bytes(self.path)
                return "(git could not read it): orchestra put it back as it last read it"
            changed = _changed_keys(self._kept, found)
            for key in changed:
                self._put_back(key)
            self._seen = self._sound = _read_bytes(self.path)
            if not changed:
                return None  # the user's own edit, of something else
            keys = ", ".join(changed)
            return f"({keys}, which name programs): orchestra put it back as the run found it"

    def _read(self) -> Settings | None:
        try:
            return program_settings(self.repo, self.path)
        except GitError:
            return None

    def _put_back(self, key: str) -> None:
        """Give ``key`` in the file the values it had when the run started."""
        where = ("config", "--file", str(self.path))
        removed = run_git(self.repo, *where, "--unset-all", key, check=False)
        if removed.returncode not in (0, 5):  # 5: there was none
            raise GitError(f"could not put back {key} in {self.path}: {removed.stderr.strip()}")
        for kept_key, value in self._kept or ():
            if kept_key == key:
                run_git(self.repo, *where, "--add", key, value)


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
