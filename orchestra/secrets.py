"""Secret values: which variables hold them, which arguments of a command do, and the
``Redactor`` that replaces them by ``***`` in text and in raw output."""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, AnyStr

from orchestra.patterns import LazyPattern

if TYPE_CHECKING:
    from orchestra.plugin.protocols import PluginSetting

#: names whose values are redacted, matched case-insensitively (so, with ``-`` read as
#: ``_``, options: ``--api-key``, ``--token``, ``--passwd``)
SECRET_NAME_PATTERNS = (
    "*_KEY",
    "*_TOKEN",
    "*_SECRET",
    "*PASSWORD*",
    "*PASSWD*",
    "*APIKEY*",
    "TOKEN",
    "SECRET",
)
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


@functools.lru_cache(maxsize=64)
def redactor_for(secrets: frozenset[str]) -> Redactor:
    """One Redactor per set of secrets: the attempts of a run mostly share theirs, and
    making one compiles its expressions."""
    return Redactor(secrets)


class Redactor:
    """Replaces secret values by ``***`` in text and in raw output.

    Each secret is looked for as given and in the forms a program prints it in
    (``printed_forms``). Where two values overlap in the output (``…AB`` and ``ABC…``
    in ``…ABC…``), the whole stretch they cover is replaced, not the first one alone.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = {secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH}
        #: the secrets as given (their printed forms are looked for too)
        self.secrets = tuple(sorted(kept, key=lambda secret: (-len(secret), secret)))
        forms = {
            form
            for secret in self.secrets
            for form in printed_forms(secret)
            if len(form) >= MIN_SECRET_LENGTH
        }
        texts = sorted(forms, key=lambda form: (-len(form), form))
        encoded = sorted({os.fsencode(form) for form in texts}, key=lambda b: (-len(b), b))
        # an alternation tries its branches in order, so the longest value wins at each
        # position; ``_text``/``_bytes`` find the first match quickly (most output has
        # none), the lookahead forms every value starting at every position (overlaps)
        self._text = re.compile("|".join(map(re.escape, texts))) if texts else None
        self._bytes = re.compile(b"|".join(map(re.escape, encoded))) if encoded else None
        self._text_at = re.compile(f"(?=({self._text.pattern}))") if self._text else None
        self._bytes_at = re.compile(b"(?=(%b))" % self._bytes.pattern) if self._bytes else None
        self._longest = len(encoded[0]) if encoded else 0

    def redact(self, text: str) -> str:
        """Return ``text`` with every secret value replaced by ``***``."""
        if self._text is None or self._text.search(text) is None:
            return text
        assert self._text_at is not None
        return _replaced(text, _spans(self._text_at, text), REDACTED)

    def redact_bytes(self, data: bytes) -> bytes:
        """Return ``data`` with every secret value (as bytes) replaced by ``***``."""
        if self._bytes is None or self._bytes.search(data) is None:
            return data
        assert self._bytes_at is not None
        return _replaced(data, _spans(self._bytes_at, data), REDACTED.encode())

    def safe_cut(self, data: bytes) -> int:
        """Return how much of an unfinished line can be redacted and written now.

        What stays may be the start of a secret the next read completes; the cut never
        splits a secret found in ``data`` nor a UTF-8 character.
        """
        cut = max(len(data) - self._longest + 1, 0) if self._bytes else len(data)
        while 0 < cut < len(data) and data[cut] & 0xC0 == 0x80:
            cut -= 1
        if self._bytes_at is not None and self._bytes is not None and self._bytes.search(data):
            for start, end in _spans(self._bytes_at, data):
                if start >= cut:
                    break
                if end > cut:
                    return start
        return cut


#: characters a URL carries as they are; a secret of these alone has no other URL form
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def printed_forms(secret: str) -> set[str]:
    """The ways a program may print ``secret``: as it is; without the blanks or the line
    end it was stored with (a token pasted with its newline is printed without it); each
    line of a multi-line one (a key file), as output is redacted a line at a time; and,
    of each of those, the text inside a JSON string (quotes, backslashes, line ends
    escaped) and percent-encoded as in a URL."""
    plain = {secret, secret.strip()}
    plain.update(line.strip() for line in secret.splitlines())
    forms = set(plain)
    for value in plain:
        if any(char in '"\\' or char < " " or char > "~" for char in value):
            import json  # only for the few secrets JSON escapes

            forms.add(json.dumps(value)[1:-1])
            forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
        if not _UNRESERVED.issuperset(value):
            from urllib.parse import quote, quote_plus  # only for such secrets

            forms.update((quote(value, safe=""), quote_plus(value, safe="")))
    forms.discard("")
    return forms


def _spans(pattern: re.Pattern, data: AnyStr) -> list[tuple[int, int]]:
    """Where ``pattern`` (a lookahead: one match per position) finds values in ``data``,
    overlapping ones merged: (start, end) pairs in order."""
    spans: list[tuple[int, int]] = []
    for match in pattern.finditer(data):
        start, end = match.span(1)
        if spans and start < spans[-1][1]:
            if end > spans[-1][1]:
                spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def _replaced(data: AnyStr, spans: list[tuple[int, int]], mark: AnyStr) -> AnyStr:
    """``data`` with each of ``spans`` replaced by ``mark``."""
    pieces = []
    done = 0
    for start, end in spans:
        pieces += [data[done:start], mark]
        done = end
    pieces.append(data[done:])
    return data[:0].join(pieces)
