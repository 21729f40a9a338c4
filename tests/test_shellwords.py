"""orchestra.shellwords splits as shlex does, word for word and error for error, in
linear time (shlex copies a word at each of its characters)."""

import shlex

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra import shellwords

#: every character the splitting treats apart, and a few that it does not
TEXT = st.text(alphabet=" \t\r\n'\"\\();<>|&#ab-é", max_size=16)


def shlex_split(text: str) -> list[str] | str:
    try:
        return shlex.split(text)
    except ValueError as error:
        return str(error)


def shlex_tokens(text: str) -> list[str] | str:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError as error:
        return str(error)


def ours(split, text: str) -> list[str] | str:
    try:
        return split(text)
    except ValueError as error:
        return str(error)


@settings(max_examples=3000, deadline=None)
@given(TEXT)
def test_split_is_shlex_split(text):
    assert ours(shellwords.split, text) == shlex_split(text)


@settings(max_examples=3000, deadline=None)
@given(TEXT)
def test_tokens_are_shlexs_with_operators_apart(text):
    assert ours(shellwords.tokens, text) == shlex_tokens(text)


def test_examples_of_each_rule():
    assert shellwords.split("""a 'b c' "d \\" e" f\\ g '' "" \\\\""") == [
        "a",
        "b c",
        'd " e',
        "f g",
        "",
        "",
        "\\",
    ]
    assert shellwords.split('"a\\b"') == ["a\\b"]  # a backslash keeps itself before others
    assert shellwords.tokens("a>b&&c # d > e\nf|g") == ["a", ">", "b", "&&", "c", "f", "|", "g"]
    assert shellwords.tokens("echo '>' \">\"") == ["echo", ">", ">"]  # quoted: a word
