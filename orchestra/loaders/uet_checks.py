"""A UET bundle's tests and commands, read into orchestra's checks and task commands.

Acceptance tests and pre-flight checks come as command strings, as objects with a
``command``, or as sentences for people; a command becomes an argument list, a shell
command when it uses shell operators, or a pwsh command when it is PowerShell, and a
sentence becomes an acceptance criterion in the prompt.
"""

from __future__ import annotations

import re
from typing import Any

from orchestra import shellwords
from orchestra.loaders.jsonfile import Fields, describe
from orchestra.spec import SHELL_OPERATORS, _shell_tokens

PROGRAM = re.compile(r"^(\./|/)?[a-z0-9_][A-Za-z0-9_.+/-]*$")
#: a command that needs pwsh, not sh: one whose first word is a PowerShell cmdlet
#: (Verb-Noun), or that reads an environment variable (``$env:``) or negates (``-not``)
#: as PowerShell does. A cmdlet's name elsewhere (``grep -q Content-Type``) is an argument
POWERSHELL = re.compile(r"^\s*[A-Z][a-z]+-[A-Z][A-Za-z]+\b|\$env:|\s-not\s|\(-not\b")
PWSH = ("pwsh", "-NoProfile", "-NonInteractive", "-Command")


class CheckReading:
    """Reads a bundle's tests and commands, noting the PowerShell ones; the base of the
    shapes' reading (``uet_shapes._Reading``), which holds the file and its notices."""

    #: the file of the bundles, named by the problems
    file: str
    #: the commands run with pwsh, named once in a notice
    pwsh: list[str]

    def _tests(self, fields: Fields) -> tuple[list[Any], list[str]]:
        """Return (checks, prose criteria) from ``acceptance_tests``: strings, or objects
        with an ``id``, a ``description`` and a ``command``; and ``acceptance_criteria``,
        sentences or objects (``criterion``, ``test_method``, ``pass_condition``)."""
        checks, criteria = self._check_list(fields, "acceptance_tests", before=False)
        later = fields.values.get("acceptance_criteria")
        for item in later if isinstance(later, list) else ():
            if isinstance(item, str) and item.strip():
                criteria.append(item.strip())
            elif isinstance(item, dict) and isinstance(item.get("criterion"), str):
                how = [
                    f"{key.replace('_', ' ')}: {item[key]}"
                    for key in ("test_method", "pass_condition")
                    if isinstance(item.get(key), str)
                ]
                criteria.append(item["criterion"] + (f" ({'; '.join(how)})" if how else ""))
        return checks, criteria

    def _preflight(self, fields: Fields) -> list[Any]:
        checks, prose = self._check_list(fields, "pre_flight_checks", before=True)
        for index, _ in enumerate(prose):
            fields.problem(
                f"pre_flight_checks[{index}]", "a pre-flight check needs a command to run"
            )
        return checks

    def _check_list(self, fields: Fields, key: str, *, before: bool) -> tuple[list, list[str]]:
        values = fields.values.get(key)
        if values is None:
            return [], []
        if not isinstance(values, list):
            fields.problem(key, f"expected a list, got {describe(values)}")
            return [], []
        checks: list[Any] = []
        criteria: list[str] = []
        for index, item in enumerate(values):
            where = f"{key}[{index}]"
            if isinstance(item, dict):
                inner = Fields(
                    item, file=self.file, task=fields.task, prefix=fields.prefix + where + "."
                )
                name = inner.string("id")
                command = inner.string("command")
                description = inner.string("description")
                fields.problems.extend(inner.problems)
                if command is None or not command.strip():
                    if description and description.strip():
                        criteria.append(description.strip())
                    else:
                        fields.problem(where, "needs a 'command' (or a 'description')")
                    continue
                check = self._command(fields, where, command.strip(), check=True)
                if name:
                    check["name"] = name
            elif isinstance(item, str):
                text = item.strip()
                if not text:
                    fields.problem(where, "empty acceptance test")
                    continue
                if reads_as_prose(text):
                    criteria.append(text)
                    continue
                check = self._command(fields, where, text, check=True)
            else:
                fields.problem(where, f"expected a string or an object, got {describe(item)}")
                continue
            if not check:
                continue
            if before:
                check["before"] = True
            checks.append(check)
        return checks, criteria

    def _command(
        self, fields: Fields, where: str, text: str, *, check: bool = False
    ) -> dict[str, Any]:
        """A command written as one string, as a check or task table: PowerShell through
        pwsh, with shell operators through sh, else split into arguments."""
        if POWERSHELL.search(text):
            self.pwsh.append(text if len(text) < 40 else text[:39] + "…")
            return {"command": [*PWSH, text]}
        try:
            shell = bool(SHELL_OPERATORS.intersection(_shell_tokens(text)))
            shellwords.split(text)
        except ValueError as error:
            fields.problem(where, f"cannot split {text!r} into arguments: {error}")
            return {}
        if shell:
            return {"command": text, "shell": True}
        return {"command": shellwords.split(text)}


def reads_as_prose(text: str) -> bool:
    """Return whether an acceptance test is a sentence for people rather than a command.

    A command starts with a program name (lowercase, or a path); a sentence starts with a
    capital letter, or is four or more words with only plain words after the first.
    """
    words = text.split()
    if not PROGRAM.fullmatch(words[0]):
        return True
    return len(words) >= 4 and all(word.isalpha() for word in words[1:])
