"""Workstream file formats as plugins: choosing the loader for a file, and loading it.

A loader (``orchestra.plugin.protocols.WorkstreamLoader``) is registered through
``orchestra_register_loaders``. ``--format NAME`` picks one by name; otherwise each
loader sniffs the file's first 4 KiB and the one that accepts it is used (when several
do, the one whose file patterns match the name). Whatever a loader returns goes through
the same semantic checks as a TOML file, so every format's errors read the same.

Each file is read once before its loader parses it, and once after: the digest a run
keeps (``Loaded.digest``) is of those bytes, and a file that changed between the two
reads is an error rather than a run of one version recorded as another.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Mapping, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from orchestra import classes
from orchestra.digests import sha256
from orchestra.errors import (
    OrchestraError,
    PluginError,
    SpecError,
    WorkstreamInvalid,
    did_you_mean,
)
from orchestra.gcpause import paused_gc
from orchestra.loaders.sets import (
    Source,
    digest,
    expand,
    merge,
    passed_over,
    resolve_aliases,
)
from orchestra.models import Workstream
from orchestra.plugin.host import PluginHost
from orchestra.plugin.registry import Registration, Registry
from orchestra.spec import checked_workstream, read_file

if TYPE_CHECKING:
    from orchestra.plugin.protocols import WorkstreamLoader

#: how much of a file the loaders' sniff sees
HEAD_SIZE = 4096


@classes.define
class LocalLoadContext:
    """What a loader gets with each file: the options, and where its notices go."""

    options: Mapping[str, Any] = attrs.Factory(dict)
    in_set: bool = False
    on_notice: Callable[[str], None] | None = None
    notices: list[str] = attrs.Factory(list)

    def notice(self, message: str) -> None:
        """Keep ``message`` and pass it on to whoever asked to hear notices."""
        self.notices.append(message)
        if self.on_notice is not None:
            self.on_notice(message)


@classes.frozen
class Loaded:
    """A loaded workstream, the format that loaded it, and how that format was chosen.

    A workstream read from several files (``load_source``) has the format they all
    share (None when they differ) and, in ``file_of``, the file of each task."""

    workstream: Workstream
    format: str | None
    reason: str
    file_of: Mapping[str, str] = attrs.Factory(dict)
    #: the formats a set's files were read in
    formats: tuple[str, ...] = ()
    #: the SHA-256 a run keeps of the files (``sets.digest``), of the bytes this load
    #: parsed: what ``resume`` compares the files with
    digest: str | None = None


def read_head(path: Path, size: int = HEAD_SIZE) -> bytes:
    """Return the first ``size`` bytes of ``path`` after any UTF-8 byte order mark (so a
    sniff that looks for ``{`` finds it); unreadable files raise SpecError."""
    return read_file(path, size).removeprefix(codecs.BOM_UTF8)


def choose_loader(
    path: Path,
    loaders: Registry[WorkstreamLoader],
    file_format: str | None = None,
    head: bytes | None = None,
) -> tuple[Registration[WorkstreamLoader], str]:
    """Return the loader for ``path`` and why it was chosen (``head``: its first bytes,
    when already read).

    Raises SpecError naming the loaders tried when the format is unknown or ambiguous.
    """
    installed = loaders.names()
    listing = ", ".join(installed) or "none installed"
    if file_format is not None:
        if file_format not in loaders:
            hint = did_you_mean(file_format, installed)
            message = f"unknown workstream format {file_format!r}{hint} (installed: {listing})"
            raise SpecError(message, file=str(path))
        return loaders.registration(file_format), "chosen by name"
    if head is None:
        head = read_head(path)
    accepted = [entry for entry in loaders if _guarded(entry, "sniff", path, head)]
    if len(accepted) > 1:
        claimed = [entry for entry in accepted if _claims(entry.item, path)]
        if len(claimed) == 1:
            return claimed[0], "detected from its content and name"
        names = " and ".join(repr(entry.name) for entry in accepted)
        raise SpecError(
            f"ambiguous format: {names} all accept this file; choose one with --format",
            file=str(path),
        )
    if not accepted:
        raise SpecError(
            f"unknown format: no workstream format accepts this file (tried: {listing}); "
            "name one with --format",
            file=str(path),
        )
    return accepted[0], "detected from its content"


def _claims(loader: WorkstreamLoader, path: Path) -> bool:
    return any(fnmatch(path.name, pattern) for pattern in loader.patterns)


def load(
    file: str | Path,
    host: PluginHost,
    *,
    file_format: str | None = None,
    options: Mapping[str, Any] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> Loaded:
    """Return the workstream in ``file``, loaded by ``file_format`` or the loader that
    recognises it, checked like any TOML workstream.

    Raises WorkstreamInvalid listing every problem, or SpecError when the file cannot be
    read, parsed, or recognised.
    """
    path = Path(file)
    content = read_file(path)
    before = sha256(content).digest()
    head = content[:HEAD_SIZE].removeprefix(codecs.BOM_UTF8)
    del content  # the loader reads the file itself
    entry, reason = choose_loader(path, host.loaders(), file_format, head)
    context = LocalLoadContext(options=dict(options or {}), on_notice=on_notice)
    with paused_gc():  # a large file is built of many objects and no cycles
        workstream = _guarded(entry, "load", path, context)
        if not isinstance(workstream, Workstream):
            raise PluginError(
                f"workstream format {entry.name!r} (plugin {entry.plugin!r}) returned "
                f"{type(workstream).__name__}, not a Workstream",
                file=str(path),
            )
        file_digest = _unchanged(path, before)
        workstream = resolve_aliases(workstream)
        checked = checked_workstream(workstream, str(path))
        found = file_digest.hex()
        return Loaded(attrs.evolve(checked, digest=found), entry.name, reason, digest=found)


def load_source(
    arguments: str | Sequence[str],
    host: PluginHost,
    *,
    file_format: str | None = None,
    options: Mapping[str, Any] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> Loaded:
    """Return the workstream that ``arguments`` hold: one file, as ``load`` reads it, or
    a directory of workstream files (or several files) read as one workstream.

    Raises WorkstreamInvalid listing every problem of every file, each line naming its
    file, or SpecError for a path that cannot be read.
    """
    if isinstance(arguments, (str, Path)):
        arguments = [str(arguments)]
    loaders = host.loaders()
    source = expand_source(arguments, loaders)
    if not source.is_set:
        return load(
            source.files[0], host, file_format=file_format, options=options, on_notice=on_notice
        )
    context = LocalLoadContext(options=dict(options or {}), in_set=True)
    parts: list[tuple[Path, Workstream]] = []
    problems: list[OrchestraError] = []
    formats: set[str] = set()
    #: each file's SHA-256, of the bytes its sniff saw and its loader parsed
    file_digests: dict[Path, bytes] = {}
    with paused_gc():
        for path in source.files:
            try:
                content = read_file(path)
                file_digests[path] = sha256(content).digest()
                head = content[:HEAD_SIZE].removeprefix(codecs.BOM_UTF8)
                del content  # only its digest is kept: a set may be large
                entry, _ = choose_loader(path, loaders, file_format, head)
                if file_format is not None and path in source.found:
                    if not _guarded(entry, "sniff", path, head):
                        # a file of another format is passed over; one named like the
                        # chosen format's files must be one
                        if _claims(entry.item, path) and not passed_over(path):
                            problems.append(_not_a_workstream(path, loaders, [entry]))
                        else:
                            context.notice(f"{path}: passed over: not a {file_format} file")
                        continue
            except SpecError as error:
                if path in source.found and error.message.startswith("unknown format"):
                    if passed_over(path):
                        context.notice(f"{path}: passed over: no workstream format reads it")
                    else:
                        problems.append(_not_a_workstream(path, loaders))
                else:
                    problems.append(error)
                continue
            try:
                workstream = _guarded(entry, "load", path, context)
                _unchanged(path, file_digests[path])
            except WorkstreamInvalid as error:
                problems.extend(error.errors)
                continue
            except OrchestraError as error:
                error.file = error.file or str(path)
                problems.append(error)
                continue
            if not isinstance(workstream, Workstream):
                raise PluginError(
                    f"workstream format {entry.name!r} (plugin {entry.plugin!r}) returned "
                    f"{type(workstream).__name__}, not a Workstream",
                    file=str(path),
                )
            parts.append((path, workstream))
            formats.add(entry.name)
    for notice in _grouped(context.notices, source):
        if on_notice is not None:
            on_notice(notice)
    if problems:
        if parts:  # the other files' problems too, all at once
            try:
                merge(parts, source, context.options, complete=False)
            except WorkstreamInvalid as error:
                problems.extend(error.errors)
        raise WorkstreamInvalid(source.label, problems)
    if not parts:
        raise SpecError("no workstream files: no format reads any of them", file=source.label)
    workstream, file_of = merge(parts, source, context.options)
    count = len(parts)
    reason = (
        f"{count} file{'s' if count != 1 else ''} ({', '.join(sorted(formats))}) read as one"
        " workstream"
    )
    # a set records the format only when it was chosen: resume recognises each file
    # again, as the run did, and passes over the same ones
    whole = digest(source, file_digests)
    workstream = attrs.evolve(workstream, digest=whole)
    return Loaded(workstream, file_format, reason, file_of, tuple(sorted(formats)), whole)


def _unchanged(path: Path, before: bytes) -> bytes:
    """Return ``before``, the SHA-256 of ``path`` as it was read before its loader
    parsed it, once the file still holds those bytes: so the digest a run keeps is of
    the workstream it runs. A file that changed meanwhile raises SpecError."""
    if sha256(read_file(path)).digest() != before:
        raise SpecError("changed while it was being read: read it again", file=str(path))
    return before


def _not_a_workstream(
    path: Path,
    loaders: Iterable[Registration[WorkstreamLoader]],
    chosen: Sequence[Registration[WorkstreamLoader]] = (),
) -> SpecError:
    """The error of a file in a directory that a format claims by its name but whose
    content no format recognises (or not the ``chosen`` one): someone's work, perhaps,
    that must not be dropped."""
    claiming = [
        f"{entry.name} ({pattern})"
        for entry in (chosen or loaders)
        for pattern in getattr(entry.item, "patterns", ())
        if fnmatch(path.name, pattern)
    ]
    which = f"{chosen[0].name} does not recognise" if chosen else "no format recognises"
    return SpecError(
        f"not a workstream: its name is one that {' and '.join(claiming)} reads, but "
        f"{which} its content; fix it, or move it out of the directory",
        file=str(path),
    )


def _grouped(notices: list[str], source: Source) -> list[str]:
    """Return a set's notices with the ones that several files gave alike said once,
    with the number of files (sixty bundles keep the same fields as metadata)."""
    files_of: dict[str, list[str]] = {}
    for notice in notices:
        file, colon, rest = notice.partition(": ")
        if colon and Path(file) in source.files:
            files_of.setdefault(rest, []).append(file)
        else:
            files_of.setdefault(notice, [])
    grouped = []
    for rest, files in files_of.items():
        if len(files) > 1:
            whole = source.arguments[0] if len(source.arguments) == 1 else "the files"
            grouped.append(f"{whole} ({len(files)} files): {rest}")
        else:
            grouped.append(f"{files[0]}: {rest}" if files else rest)
    return grouped


def source_digest(arguments: Sequence[str], host: PluginHost) -> str:
    """Return the digest a run keeps of its workstream's files (``sets.digest``), of
    the files as they are now (a run keeps ``Loaded.digest``, of the ones it read)."""
    return digest(expand_source(arguments, host.loaders()))


def expand_source(arguments: Sequence[str], loaders: Registry[WorkstreamLoader]) -> Source:
    """Return the files ``arguments`` name, directories expanded (see ``sets.expand``)."""
    patterns = [pattern for entry in loaders for pattern in getattr(entry.item, "patterns", ())]
    return expand(arguments, list(dict.fromkeys(patterns)))


def _guarded(entry: Registration[WorkstreamLoader], method: str, *arguments: Any) -> Any:
    """Call a loader's method; a plugin's bug becomes one line naming the plugin."""
    try:
        return getattr(entry.item, method)(*arguments)
    except OrchestraError:
        raise
    except Exception as error:
        raise PluginError(
            f"workstream format {entry.name!r} (plugin {entry.plugin!r}) failed in "
            f"{method}(): {type(error).__name__}: {error}",
            file=str(arguments[0]),
        ) from error
