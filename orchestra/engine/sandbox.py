"""The sandbox of an attempt's processes: bubblewrap, the whole filesystem read-only but
for what the attempt may write.

Every process an attempt runs through its ``LocalContext`` (workspace setup, the tool, the
checks) starts inside ``bwrap``. Writable there: the attempt's working tree (what the
workspace's ``writable_paths`` names; the directory alone for a workspace that does not
say), the attempt's scratch directory, the tool's state directory, a private temporary
directory (``TMPDIR``) and the directories of the ``sandbox_writable`` setting. orchestra's
own directory (the database, the logs, other attempts' worktrees) stays read-only even
where it lies inside a writable tree, and so does the repository's metadata: git inside
sees a private view of it (``_GitView``). The network is shared; ``/run`` (the sockets of
systemd, D-Bus, Docker) is hidden. docs/sandbox.md says exactly what is and is not
confined, and why bubblewrap.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence

from orchestra import classes
from orchestra.config import SANDBOX_MODES as MODES
from orchestra.config import Settings
from orchestra.errors import ConfigError, OrchestraError

#: hidden in the sandbox (but for what the attempt needs of it: its project, its repository)
HIDDEN = "/run"
#: what every sandboxed process gets, in this order (mounts that depend on the attempt follow)
BASE_OPTIONS = (
    # a process of root keeps every capability in bwrap unless told, and could remount / rw
    "--cap-drop",
    "ALL",
    # the sandbox is killed when orchestra dies (bwrap's process then, and its command)
    "--die-with-parent",
    "--unshare-ipc",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    # the sockets of systemd (systemd-run), D-Bus and Docker would run commands outside
    "--tmpfs",
    HIDDEN,
)
#: for a sandbox of root: kernel settings (root may write /proc/sys/kernel/core_pattern,
#: a program the kernel then runs outside, even without capabilities; bwrap covers them
#: only for other users). Not for other users: a cover on /proc keeps a sandbox from
#: starting inside this one (codex's), and their /proc/sys is read-only to them anyway.
ROOT_OPTIONS = (
    "--ro-bind",
    "/proc/sys",
    "/proc/sys",
    "--ro-bind-try",
    "/proc/sysrq-trigger",
    "/proc/sysrq-trigger",
)
# Not --unshare-pid: bwrap's init reports its command's end before it has exited itself,
# so the attempt's process group would seem to outlive every command; and orphans would
# go to that init rather than to orchestra, which collects them (engine/containment.py).
#
# bwrap's own process is in the attempt's process group. A SIGTERM to the group would end
# it at once and, with --die-with-parent, SIGKILL the command: no grace period. So bwrap
# starts with SIGTERM ignored (``env --ignore-signal``), waits for its command, and exits
# with its status; the command starts with SIGTERM as it should be (``--default-signal``).
OUTER_SIGNALS = "--ignore-signal=TERM"
INNER_SIGNALS = "--default-signal=TERM"
#: the start of the name of an attempt's private directory, ``orchestra-<label>-<random>``
#: in the system's temporary directory (the label is the run's id)
PRIVATE_PREFIX = "orchestra-"
#: how long the probe may take before bwrap counts as unusable
PROBE_SECONDS = 10.0
#: what bwrap's own process keeps of the command's environment: the markers that find an
#: attempt's processes (engine/containment.py). The command's variables reach it through
#: ``--args`` (``environment_arguments``): the sandbox may read bwrap's
#: ``/proc/<pid>/environ`` (bwrap has dropped its capabilities, so as root nothing stops
#: it), and a key a tool hides from the commands it runs must not wait for them there.
BWRAP_KEEPS = ("ORCHESTRA_RUN_ID", "ORCHESTRA_TASK_ID", "ORCHESTRA_ATTEMPT")


class SandboxUnavailable(OrchestraError):
    """``sandbox = "bwrap"`` asked for, and bubblewrap cannot confine attempts here."""


@classes.frozen
class SandboxChoice:
    """Whether a run's attempts will be sandboxed on this machine, and why (not)."""

    #: bwrap's path when attempts are confined, else None
    program: str | None
    #: why: what was found, or why attempts are not confined
    reason: str
    #: whether the setting insists on the sandbox (``bwrap``): a run refuses to go without
    required: bool = False
    #: the ``env`` program (GNU coreutils 8.31 or newer) that sets bwrap's signals
    env: str = "env"

    @property
    def confined(self) -> bool:
        return self.program is not None

    def describe(self) -> str:
        """One line for ``tools``, ``plan`` and the start of a run."""
        if self.confined:
            return f"attempts run in a bubblewrap sandbox ({self.program})"
        if self.required:
            return f"a run would stop: {self.reason}"
        return f"attempts are not sandboxed: {self.reason}"


def choose(settings: Settings) -> SandboxChoice:
    """Return what the ``sandbox`` setting gives on this machine; raise ConfigError for a
    value that is not a mode."""
    mode, source = settings.sandbox, settings.source("sandbox")
    if mode not in MODES:
        raise ConfigError(f"sandbox must be one of {', '.join(MODES)}, not {mode!r} (in {source})")
    required = mode == "bwrap"
    if mode == "none":
        return SandboxChoice(None, f'sandbox = "none" in {source}')
    executor = getattr(settings, "executor", "local")
    if executor != "local":
        reason = f"executor {executor!r} runs them elsewhere; only the local executor sandboxes"
        return SandboxChoice(None, _insisted(reason, source) if required else reason, required)
    program, env, problem = probe()
    if program is None:
        return SandboxChoice(None, _insisted(problem, source) if required else problem, required)
    return SandboxChoice(program, f"bubblewrap at {program}", required, env)


def require(settings: Settings) -> SandboxChoice:
    """Return the run's sandbox choice; raise SandboxUnavailable when the setting insists
    on a sandbox this machine cannot give."""
    choice = choose(settings)
    if choice.required and not choice.confined:
        raise SandboxUnavailable(choice.reason)
    return choice


def _insisted(problem: str, source: str) -> str:
    return f'sandbox = "bwrap" in {source}, but {problem}'


@functools.cache
def probe() -> tuple[str | None, str, str]:
    """Return (bwrap's path, env's path, '') when bubblewrap can make its sandbox here,
    else (None, '', why).

    bwrap may be installed and still unusable: without user namespaces (a container, a
    kernel setting), it cannot make its mounts. So it is tried once, the way every
    attempt's process starts.
    """
    import shutil

    program, env = shutil.which("bwrap"), shutil.which("env")
    if program is None:
        return (
            None,
            "",
            "bubblewrap is not installed (no bwrap on PATH; Debian: apt install bubblewrap)",
        )
    if env is None:
        return None, "", "no env program on PATH"
    try:
        tried = subprocess.run(
            launcher(program, env, ["true"]),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, "", f"bwrap ({program}) cannot run: {error}"
    if tried.returncode != 0:
        said = tried.stderr.decode(errors="replace").strip().splitlines()
        why = said[0] if said else f"exit status {tried.returncode}"
        return None, "", f"bwrap ({program}) cannot make its sandbox here: {why}"
    return program, env, ""


def launcher(
    program: str, env: str, command: Sequence[str], mounts: Sequence[str] = ()
) -> list[str]:
    """Return the command line that runs ``command`` in bwrap with ``mounts`` (and the
    options after them: ``--chdir``, ``--args``) on top of ``BASE_OPTIONS``."""
    return [
        env,
        OUTER_SIGNALS,
        program,
        *BASE_OPTIONS,
        *(ROOT_OPTIONS if os.geteuid() == 0 else ()),
        *mounts,
        "--",
        env,
        INNER_SIGNALS,
        *command,
    ]


def environment_arguments(env: Mapping[str, str]) -> int:
    """Return a descriptor (an anonymous file, read from its start) holding the bwrap
    arguments that give the command exactly ``env`` and nothing of bwrap's own:
    ``--clearenv`` and a ``--setenv`` per variable, NUL-separated, as ``--args`` reads them.
    Neither bwrap's environment nor its command line, both readable in ``/proc``, holds a
    value of ``env``."""
    parts = [b"--clearenv"]
    for name, value in env.items():
        parts += [b"--setenv", os.fsencode(name), os.fsencode(value)]
    descriptor = os.memfd_create("orchestra-sandbox-environment", os.MFD_CLOEXEC)
    try:
        data = memoryview(b"\0".join(parts) + b"\0")
        while data:
            data = data[os.write(descriptor, data) :]
        os.lseek(descriptor, 0, os.SEEK_SET)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def missing_program(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> OSError | None:
    """Return the error that starting ``argv`` would raise (not found, not executable), as
    ``execvp`` looks for it; None when it can start.

    Inside the sandbox bwrap would report it as its own exit status 1; found out here, the
    attempt says ``cannot run 'x'`` as it does without the sandbox.
    """
    import errno

    program = os.fspath(argv[0])
    if os.sep in program:
        places = [program]
    else:  # as execvp: each directory of PATH in turn, an empty entry meaning the cwd
        places = [os.path.join(directory, program) for directory in os.get_exec_path(env)]
    not_executable = False
    for place in places:
        path = os.path.join(cwd, place)  # a relative one is relative to the process's cwd
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return None
            not_executable = True
    if not_executable:
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


class Sandbox:
    """The sandbox of one attempt: which paths its processes may write, and the bwrap
    command line that holds them to it.

    ``writable(directory)`` names the trees the attempt may write when a process runs in
    ``directory`` (the workspace's answer). ``protected`` paths stay read-only inside them
    (orchestra's directory); ``extra`` are the ``sandbox_writable`` directories. The
    private directory (the temporary directory and the git view) is made at the first
    process, ``orchestra-<label>-*`` in the system's temporary directory (the run's id: a
    killed orchestrator's are known by it), and removed by ``close``.
    """

    def __init__(
        self,
        program: str,
        *,
        writable: Callable[[str], Sequence[str]],
        protected: Iterable[str] = (),
        extra: Iterable[str] = (),
        label: str = "",
        env: str = "env",
        visible: Iterable[str] = (),
    ) -> None:
        self.program = program
        self.env = env
        self._label = label
        self._writable = writable
        self._protected = [os.path.realpath(path) for path in protected]
        self._extra = [os.path.realpath(os.path.expanduser(path)) for path in extra]
        self._visible = [os.path.realpath(path) for path in visible]
        self._private: str | None = None
        self._views: dict[str, _GitView | None] = {}

    def command(
        self,
        argv: Sequence[str],
        cwd: str,
        env: Mapping[str, str],
        also_writable: Iterable[str | os.PathLike[str] | None] = (),
    ) -> tuple[list[str], dict[str, str], int]:
        """Return the command line and environment that run ``argv`` in ``cwd`` inside the
        sandbox with the environment ``env``, and the descriptor that carries ``env`` to
        bwrap: the caller passes it to the child and closes it once the child has started.
        ``also_writable`` are the attempt's scratch and state directories (None or missing
        ones are left out)."""
        private = self._private_directory()
        temporary = os.path.join(private, "tmp")
        mounts: list[tuple[str, str, str]] = []
        roots = [os.path.realpath(path) for path in self._writable(cwd)]
        needed = list(self._visible)
        for root in roots:
            mounts.append(("--bind", root, root))
            for path in self._protected:
                if _inside(path, root) and path != root:
                    mounts.append(("--ro-bind", path, path))
            view = self._view(root)
            if view is not None:
                mounts += view.mounts(roots)
                needed.append(view.common)
        for path in needed:  # a project under /run (/run/media/…) must still be seen
            writable = any(_inside(path, root) for root in roots)
            if path and _inside(path, HIDDEN) and not writable and os.path.exists(path):
                mounts.append(("--ro-bind", path, path))
        for writable_path in (*also_writable, *self._extra):
            # a missing one cannot be made
            if writable_path is not None and os.path.exists(writable_path):
                real = os.path.realpath(writable_path)
                mounts.append(("--bind", real, real))
        mounts.append(("--bind", temporary, temporary))
        resolver = os.path.realpath("/etc/resolv.conf")
        if _inside(resolver, HIDDEN) and os.path.exists(resolver):  # systemd-resolved's
            mounts.append(("--ro-bind", resolver, resolver))
        # a mount inside another must come after it, or the outer one would hide it
        mounts.sort(key=lambda mount: mount[2].count(os.sep))
        options = [part for mount in mounts for part in mount]
        options += ["--chdir", os.fspath(cwd)]
        variables = environment_arguments({**env, "TMPDIR": temporary})
        options += ["--args", str(variables)]
        kept = {name: env[name] for name in BWRAP_KEEPS if name in env}
        return launcher(self.program, self.env, argv, options), kept, variables

    def close(self) -> None:
        """Remove the private directory (the temporary files, the git view)."""
        if self._private is not None:
            import shutil

            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None
            self._views.clear()

    def _private_directory(self) -> str:
        """The attempt's private directory, made at the first process: short (in the
        system's temporary directory), since sockets made in TMPDIR must fit in 108 bytes."""
        if self._private is None:
            import tempfile

            prefix = f"{PRIVATE_PREFIX}{self._label}-" if self._label else PRIVATE_PREFIX
            self._private = tempfile.mkdtemp(prefix=prefix)
            os.mkdir(os.path.join(self._private, "tmp"), 0o700)
        return self._private

    def _view(self, root: str) -> _GitView | None:
        """The git view of the repository holding ``root``, made once per attempt, before
        anything of the attempt has run in it (so the ``.git`` it reads is orchestra's)."""
        if root not in self._views:
            place = os.path.join(self._private_directory(), f"git{len(self._views)}")
            self._views[root] = _GitView.of(root, place)
        return self._views[root]


def leftover_labels() -> set[str]:
    """Return the labels (run ids) of the sandboxes' private directories in the system's
    temporary directory: those of running runs, and those killed runs left. Whose run a
    label names, and whether it is over, the caller finds out."""
    import tempfile

    try:
        names = os.listdir(tempfile.gettempdir())
    except OSError:
        return set()
    labels = set()
    for name in names:
        # orchestra-<label>-<random>: mkdtemp's random part has no "-"
        label, dash, _ = name.removeprefix(PRIVATE_PREFIX).rpartition("-")
        if name.startswith(PRIVATE_PREFIX) and dash and label:
            labels.add(label)
    return labels


def leftovers(run_id: str) -> list[str]:
    """Return the private directories (``orchestra-<run>-*`` in the system's temporary
    directory) of run ``run_id``'s sandboxes, sorted: what its attempts left if no
    process drives the run."""
    import glob
    import tempfile

    pattern = os.path.join(tempfile.gettempdir(), f"{PRIVATE_PREFIX}{glob.escape(run_id)}-*")
    return sorted(
        path for path in glob.glob(pattern) if os.path.isdir(path) and not os.path.islink(path)
    )


def remove_leftovers(run_id: str) -> list[str]:
    """Remove the private directories (``leftovers``) that the attempts of run ``run_id``
    left when their orchestrator was killed; return their paths. Call it only when no
    process drives the run."""
    import shutil

    removed = []
    for path in leftovers(run_id):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(path)
    return removed


class _GitView:
    """A private view of the repository's metadata for git inside the sandbox.

    The real ``.git`` stays read-only: its config, hooks and refs cannot be changed, so no
    branch moves and no program is set for orchestra's own git to run. What git writes in
    an attempt's ordinary work goes to private copies: the index and HEAD (``git add``,
    ``git status`` refreshing the index), and new objects (an object directory of its own
    that borrows every object of the real one through ``info/alternates``). Whatever moves
    a ref or writes the config (``git commit``, ``git branch``, ``git config``) fails with
    "Read-only file system". orchestra's own git, outside, sees none of it: it commits the
    files the attempt left in the working tree.
    """

    def __init__(
        self, marker: str, common: str = "", mounts: Sequence[tuple[str, str, str]] = ()
    ) -> None:
        self.marker = marker
        #: the repository's shared git directory ('' when the ``.git`` cannot be read)
        self.common = common
        self._mounts = list(mounts)

    def mounts(self, roots: Sequence[str]) -> list[tuple[str, str, str]]:
        """The mounts of the view, and the ``.git`` marker made read-only where it lies in
        a writable tree and the view does not cover it (a linked worktree's ``.git`` file,
        which a task could otherwise point at a gitdir of its own)."""
        covered = {target for _, _, target in self._mounts}
        if self.marker not in covered and any(_inside(self.marker, root) for root in roots):
            return [*self._mounts, ("--ro-bind", self.marker, self.marker)]
        return self._mounts

    @classmethod
    def of(cls, root: str, place: str) -> _GitView | None:
        """Make the view of the repository holding ``root`` in the new directory ``place``;
        None when ``root`` is in no repository. A ``.git`` that cannot be read gets no
        view, only its protection."""
        marker = _git_marker(root)
        if marker is None:
            return None
        gitdir: str | None
        if os.path.isdir(marker):
            marker = gitdir = common = os.path.realpath(marker)
        else:
            gitdir = _read_gitdir(marker)
            if gitdir is None:
                return cls(marker)
            common = _common_dir(gitdir)
        import shutil  # here: its import (zlib, bz2, lzma) would cost every run's start

        os.mkdir(place, 0o700)
        shared = os.path.join(place, "common")
        if gitdir != common:  # a linked worktree: its own gitdir beside the shared one
            _mirror(common, shared, common)
            own = os.path.join(place, "gitdir")
            shutil.copytree(gitdir, own, symlinks=True)
            with open(os.path.join(own, "commondir"), "w") as file:
                file.write(shared + "\n")
            return cls(marker, common, [("--bind", shared, shared), ("--bind", own, gitdir)])
        # the main checkout: the view covers the real .git, which it reaches at an alias
        real = os.path.join(place, "real")
        os.mkdir(real)
        _mirror(common, shared, real)
        return cls(marker, common, [("--ro-bind", common, real), ("--bind", shared, common)])


def _mirror(common: str, shared: str, real: str) -> None:
    """Fill ``shared`` with the repository's shared metadata as git inside will see it:
    symbolic links into ``real`` (read-only) for all of it but HEAD and the index, which
    are copied (git writes them through a lock file beside the link's target), and the
    objects, a private directory borrowing the real one's."""
    import shutil

    os.mkdir(shared)
    for name in os.listdir(common):
        source = os.path.join(common, name)
        target = os.path.join(shared, name)
        if name == "objects":
            os.makedirs(os.path.join(target, "info"))
            with open(os.path.join(target, "info", "alternates"), "w") as file:
                file.write(os.path.join(real, "objects") + "\n")
        elif name in ("HEAD", "index") and os.path.isfile(source):
            shutil.copyfile(source, target)
        else:
            os.symlink(os.path.join(real, name), target)


def _git_marker(root: str) -> str | None:
    """Return the ``.git`` (directory or file) that governs ``root``, the nearest above."""
    directory = root
    while True:
        marker = os.path.join(directory, ".git")
        if os.path.exists(marker):
            return marker
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _read_gitdir(marker: str) -> str | None:
    """Return the directory a ``.git`` file points to (``gitdir: PATH``)."""
    try:
        with open(marker) as file:
            line = file.readline().strip()
    except OSError:
        return None
    if not line.startswith("gitdir:"):
        return None
    path = line.removeprefix("gitdir:").strip()
    path = os.path.join(os.path.dirname(marker), path)  # relative to the worktree
    return os.path.realpath(path) if os.path.isdir(path) else None


def _common_dir(gitdir: str) -> str:
    """Return the repository's shared directory: ``commondir`` of a linked worktree's
    gitdir, else the gitdir itself."""
    try:
        with open(os.path.join(gitdir, "commondir")) as file:
            relative = file.readline().strip()
    except OSError:
        return gitdir
    return os.path.realpath(os.path.join(gitdir, relative))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
