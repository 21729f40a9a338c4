"""Secret values: which variables hold them, which arguments of a command do, and the
``Redactor`` that replaces them by ``***`` in text and in raw output."""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from orchestra.patterns import LazyPattern

if TYPE_CHECKING:
    from orchestra.plugin.protocols import PluginSetting

#: names whose values are redacted, matched case-insensitively
SECRET_NAME_PATTERNS = ("*_KEY", "*_TOKEN", "*_SECRET", "*PASSWORD*")
#: shorter values are not redacted: "***" in place of every "1" would hide the whole log
MIN_SECRET_LENGTH = 4
REDACTED = "***"

#: the patterns as one expression, with fnmatch's meaning
_SECRET_NAME = re.compile("|".join(map(fnmatch.translate, SECRET_NAME_PATTERNS)))
#: a value as a shell writes it: quoted, or a word up to a space or an operator
_VALUE = r"""('[^']*'|"(?:[^"\\]|\\.)*"|[^\s;&|()<>'"][^\s;&|()<>]*)"""
#: ``NAME=value``, alone or inside a shell command
_ASSIGNMENT = LazyPattern(r"(?<![\w-])([A-Za-z_][A-Za-z0-9_]*)=" + _VALUE)
#: an option's name alone: ``--api-key``, ``-p``
_OPTION_NAME = LazyPattern(r"--?[A-Za-z][A-Za-z0-9_-]*")
#: ``--name=value`` or ``--name value`` (the value not an option itself)
_OPTION = LazyPattern(r"(?<![\w-])(--?[A-Za-z][A-Za-z0-9_-]*)(=|[ \t]+)(?!-)" + _VALUE)


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Return whether a variable's name says its value is a secret (``*_TOKEN`` …)."""
    return _SECRET_NAME.match(name.upper()) is not None


def secret_settings(settings: Iterable[PluginSetting]) -> frozenset[str]:
    """The names of the plugins' ``settings`` whose values are secrets: declared so, or
    named so. Their values are never recorded with a run."""
    return frozenset(
        setting.name for setting in settings if setting.secret or is_secret_name(setting.name)
    )


def is_secret_option(option: str) -> bool:
    """Return whether a command-line option names a secret (``--api-key``, ``--password``)."""
    return _OPTION_NAME().fullmatch(option) is not None and is_secret_name(
        option.lstrip("-").replace("-", "_")
    )


def secret_values(env: Mapping[str, str], declared: Iterable[str] = ()) -> list[str]:
    """Return the values of ``env``'s secret-looking variables and of those in ``declared``."""
    declared = frozenset(declared)
    values: list[str] = []
    for name, value in env.items():
        if value and (name in declared or is_secret_name(name)) and value not in values:
            values.append(value)
    return values


def _literal_spans(text: str) -> Iterable[tuple[int, int, str]]:
    """(start, end, value) of each secret written literally in ``text``: ``TOKEN=…``,
    ``--api-key=…``, ``--password …``, also inside a shell command."""
    for match in _ASSIGNMENT().finditer(text):
        if is_secret_name(match.group(1)):
            yield match.start(2), match.end(2), _unquote(match.group(2))
    for match in _OPTION().finditer(text):
        if is_secret_option(match.group(1)):
            yield match.start(3), match.end(3), _unquote(match.group(3))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _plain(argv: Sequence[str]) -> bool:
    """Whether no argument can hold a literal secret: each is written ``NAME=value``,
    ``--option=value`` or after an option, so needs an ``=`` or a ``-`` somewhere. Asked
    at every attempt, it spares the expressions (3 µs) for commands like ``make``."""
    return not any("=" in argument or "-" in argument for argument in argv)


def literal_secrets(argv: Sequence[str]) -> list[str]:
    """Return the secret values a command line holds literally (see ``mask_arguments``)."""
    if _plain(argv):
        return []
    values: list[str] = []
    for index, argument in enumerate(argv):
        values += [value for _, _, value in _literal_spans(argument)]
        if index and is_secret_option(argv[index - 1]) and not argument.startswith("-"):
            values.append(argument)
    return [value for value in dict.fromkeys(values) if value]


def mask_arguments(argv: Sequence[str]) -> list[str]:
    """Return ``argv`` with literal secrets replaced by ``***``: the value of an argument
    ``NAME=value`` whose name looks secret, of ``--api-key=value``, the argument after
    ``--api-key`` or ``--password``, and the same inside a shell command string."""
    if _plain(argv):
        return list(argv)
    masked = []
    for index, argument in enumerate(argv):
        if index and is_secret_option(argv[index - 1]) and not argument.startswith("-"):
            masked.append(REDACTED)
            continue
        spans = sorted(_literal_spans(argument), reverse=True)
        for start, end, _ in spans:
            argument = argument[:start] + REDACTED + argument[end:]
        masked.append(argument)
    return masked


def masked_command(command: str | Sequence[str] | None) -> str | None:
    """A task's command as the attempt records it: one line, literal secrets masked."""
    if command is None:
        return None
    if isinstance(command, str):
        return mask_arguments([command])[0]
    return " ".join(mask_arguments(command))


class Redactor:
    """Replaces secret values by ``***`` in text and in raw output, longest value first."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = {secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH}
        self.secrets = tuple(sorted(kept, key=lambda secret: (-len(secret), secret)))
        encoded = sorted({os.fsencode(secret) for secret in self.secrets}, key=lambda b: -len(b))
        # an alternation tries its branches in order, so longest first wins at each position
        self._text = re.compile("|".join(map(re.escape, self.secrets))) if kept else None
        self._bytes = re.compile(b"|".join(map(re.escape, encoded))) if kept else None
        self._longest = len(encoded[0]) if encoded else 0

    def redact(self, text: str) -> str:
        """Return ``text`` with every secret value replaced by ``***``."""
        return self._text.sub(REDACTED, text) if self._text else text

    def redact_bytes(self, data: bytes) -> bytes:
        """Return ``data`` with every secret value (as bytes) replaced by ``***``."""
        return self._bytes.sub(REDACTED.encode(), data) if self._bytes else data

    def safe_cut(self, data: bytes) -> int:
        """Return how much of an unfinished line can be redacted and written now.

        What stays may be the start of a secret the next read completes; the cut never
        splits a secret found in ``data`` nor a UTF-8 character.
        """
        cut = max(len(data) - self._longest + 1, 0) if self._bytes else len(data)
        while 0 < cut < len(data) and data[cut] & 0xC0 == 0x80:
            cut -= 1
        if self._bytes:
            for match in self._bytes.finditer(data):
                if match.start() >= cut:
                    break
                if match.end() > cut:
                    return match.start()
        return cut
