"""Splitting a command string into words as ``shlex`` does, in time linear in its length.

``shlex`` builds each word one character at a time (``self.token += char``), which
copies the word so far at every character: an 800 KB check took 41 s to validate. These
functions follow shlex's POSIX rules exactly, collecting characters in a list and
taking runs of ordinary characters in one step.
"""

from __future__ import annotations

import re

#: the tokens by which a shell joins or redirects commands
OPERATORS = frozenset(
    {"&&", "||", "|", ";", ">", ">>", "<", "<<", "&", ">&", "<&", "&>", "|&", ">|", "(", ")"}
)
_WHITESPACE = " \t\r\n"
#: the characters shlex's ``punctuation_chars=True`` sets apart: shell operators
_PUNCTUATION = "();<>|&"
_PLAIN_WORD = re.compile(r"[^ \t\r\n'\"\\]+")
_PLAIN_WORD_OR_COMMENT = re.compile(r"[^ \t\r\n'\"\\();<>|&#]+")
_PLAIN_DOUBLE_QUOTED = re.compile(r'[^"\\]+')


def split(text: str) -> list[str]:
    """Return ``text`` split into words as ``shlex.split(text)`` does; raises ValueError
    as it does (an unclosed quote, a backslash at the end)."""
    return _words(text, operators=False)


def tokens(text: str) -> list[str]:
    """Return ``text`` split as a shell would, operators apart even where glued (a>b):
    what ``shlex.shlex(text, posix=True, punctuation_chars=True)`` with
    ``whitespace_split`` yields (``#`` starts a comment, as there)."""
    return _words(text, operators=True)


def _words(text: str, *, operators: bool) -> list[str]:
    """The state machine of ``shlex.shlex.read_token`` in POSIX mode, without comments
    (``operators=False``, as ``shlex.split``) or with ``#`` comments and runs of
    ``();<>|&`` as words of their own (``operators=True``)."""
    plain = _PLAIN_WORD_OR_COMMENT if operators else _PLAIN_WORD
    words: list[str] = []
    token: list[str] = []
    quoted = False  # the word had quotes: '' is a word
    state = " "  # " " between words, "a" in a word, "c" in operators, or the open quote
    position, end = 0, len(text)

    def emit() -> None:
        nonlocal token, quoted
        if token or quoted:
            words.append("".join(token))
        token, quoted = [], False

    while position < end:
        char = text[position]
        if state == "'":
            close = text.find("'", position)
            if close < 0:
                raise ValueError("No closing quotation")
            token.append(text[position:close])
            position, state = close + 1, "a"
            continue
        if state == '"':
            run = _PLAIN_DOUBLE_QUOTED.match(text, position)
            if run:
                token.append(run.group())
                position = run.end()
            elif char == '"':
                position, state = position + 1, "a"
            else:  # a backslash escapes only a quote or a backslash here
                if position + 1 == end:
                    raise ValueError("No escaped character")
                escaped = text[position + 1]
                token.append(escaped if escaped in '"\\' else "\\" + escaped)
                position += 2
            continue
        if state == "c":
            if char in _PUNCTUATION:
                token.append(char)
                position += 1
                continue
            state = " "
            emit()
            if char in _WHITESPACE:
                position += 1
            elif char == "#":
                position = _line_end(text, position)
            continue
        # between words, or in one
        if char in _WHITESPACE:
            position += 1
            if state == "a":
                state = " "
                emit()
        elif operators and char == "#":
            position = _line_end(text, position)
            if state == "a":
                state = " "
                emit()
        elif char == "\\":
            if position + 1 == end:
                raise ValueError("No escaped character")
            token.append(text[position + 1])
            position, state = position + 2, "a"
        elif char in "'\"":
            position, state, quoted = position + 1, char, True
        elif operators and char in _PUNCTUATION:
            if state == "a":  # the word ends here; the operator starts the next one
                state = " "
                emit()
                continue
            token.append(char)
            position, state = position + 1, "c"
        else:
            run = plain.match(text, position)
            assert run is not None  # char is none of the characters the pattern leaves out
            token.append(run.group())
            position, state = run.end(), "a"
    if state in "'\"":
        raise ValueError("No closing quotation")
    if state != " ":
        emit()
    return words


def _line_end(text: str, position: int) -> int:
    """Where the line after a comment's ``#`` at ``position`` starts (or the text ends)."""
    newline = text.find("\n", position)
    return len(text) if newline < 0 else newline + 1
