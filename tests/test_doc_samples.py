"""The console samples in the docs are real output: each block marked
``<!-- sample: SCENARIO -->`` is run again, command by command, in a fresh project made
for SCENARIO, and what the commands print now must be what the block shows (run ids,
times, durations, commit hashes and the project's path made alike on both sides).

``ORCHESTRA_UPDATE_DOC_SAMPLES=1 pytest tests/test_doc_samples.py`` rewrites the marked
blocks from what the commands print instead (those without a ``…`` line: a block that
leaves lines out is checked, not written).
"""

from __future__ import annotations

import os
import re
import shlex
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestra.testing import make_git_repo, run_orchestra

pytestmark = pytest.mark.slow  # every console sample of the docs, run for real

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: where the samples say the project is (a label put in place of the test's tmp_path)
SHOWN_PROJECT = "/home/me/tour"
#: a PATH without aider and codex, the same on every machine that has the usual tools
PATH = "/usr/local/bin:/usr/bin:/bin"
#: the real aider and codex (scripts/setup --tools), and where the samples say they are
TOOLS = ROOT / ".tools" / "bin"
SHOWN_CHECKOUT = "/work/main"
UPDATE = os.environ.get("ORCHESTRA_UPDATE_DOC_SAMPLES") == "1"

MARKER = re.compile(r"^<!-- sample: ([a-z-]+) -->\n```console\n(.*?)^```$", re.M | re.S)
COMMAND = re.compile(r"^\$ ((?:[A-Z_]+=\S+ )*(?:orchestra|echo) .*)$")
RUN_ID = re.compile(r"\b\d{8}-\d{6}-[0-9a-f]{4}\b")

FAIL_TOML = """\
id = "fail"

[defaults]
max_attempts = 2
backoff = { initial = "200ms", jitter = false }

[[tasks]]
id = "build"
command = ["sh", "-c", "echo compiling; echo 'error: missing semicolon' >&2; exit 3"]

[[tasks]]
id = "package"
depends_on = ["build"]
command = ["echo", "packaging"]

[[tasks]]
id = "docs"
command = ["sh", "-c", "sleep 1; echo docs built"]
"""


ENV_TOML = """\
# env.toml
id = "env"

[defaults]
max_attempts = 1

[[tasks]]
id = "too-slow"
command = ["sh", "-c", "echo working; sleep 10"]
timeout = "1s"

[[tasks]]
id = "silent"
command = ["sh", "-c", "echo one; sleep 0.5; echo two; sleep 5; echo never"]
idle_timeout = "1s"

[[tasks]]
id = "missing"
command = ["no-such-program", "--flag"]

[[tasks]]
id = "checked"
command = ["true"]
checks = ["echo check one", { name = "fails", command = "echo check two; exit 4", shell = true }]

[[tasks]]
id = "bad-check"
command = ["true"]
checks = ["no-such-checker"]
"""


SCOPE_TOML = """\
# ws.toml
id = "greetings"

[[tasks]]
id = "greet"
command = ["sed", "-i", "s/hello/hello, world/", "hello.py"]
files = { write = ["hello.py"] }

[[tasks]]
id = "sneaky"
command = ["sh", "-c", "echo 'token = 1' > settings.cfg; echo '# greeted' >> hello.py"]
files = { write = ["hello.py"] }
max_attempts = 1
"""


def demo_project(directory: Path) -> Path:
    """A fresh clone, as far as the demo goes: a git repository with the demo workstream."""
    workstream = (ROOT / "examples" / "demo" / "workstream.toml").read_text()
    return make_git_repo(directory, {"examples/demo/workstream.toml": workstream})


def fail_project(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "fail.toml").write_text(FAIL_TOML)
    return directory


def env_project(directory: Path) -> Path:
    """Timeouts, a missing program and failing checks: the file docs/cli.md shows."""
    assert ENV_TOML in (DOCS / "cli.md").read_text(), "docs/cli.md shows another env.toml"
    directory.mkdir(parents=True)
    (directory / "env.toml").write_text(ENV_TOML)
    return directory


def scope_project(directory: Path) -> Path:
    """A git repository whose run merges one change and refuses another."""
    assert SCOPE_TOML in (DOCS / "cli.md").read_text(), "docs/cli.md shows another ws.toml"
    files = {"hello.py": 'def greet():\n    return "hello"\n', "ws.toml": SCOPE_TOML}
    return make_git_repo(directory, files)


def empty_project(directory: Path) -> Path:
    directory.mkdir(parents=True)
    return directory


def installed_tools_project(directory: Path) -> Path:
    """The real aider and codex of the checkout's .tools/bin, codex disabled."""
    if not (TOOLS / "aider").exists() or not (TOOLS / "codex").exists():
        pytest.skip("the real aider and codex are not installed (scripts/setup --tools)")
    directory.mkdir(parents=True)
    (directory / "orchestra.toml").write_text("[tools.codex]\nenabled = false\n")
    return directory


SCENARIOS: dict[str, Callable[[Path], Path]] = {
    "demo": demo_project,
    "fail": fail_project,
    "env": env_project,
    "scope": scope_project,
    "empty": empty_project,
    "installed-tools": installed_tools_project,
}


class Sample:
    """One marked block: where it is, its scenario, and its commands with their output."""

    def __init__(self, page: Path, match: re.Match) -> None:
        self.page = page
        self.scenario = match.group(1)
        self.span = match.span(2)
        self.text = match.group(2)
        self.steps: list[tuple[str, list[str]]] = []
        for line in self.text.splitlines():
            command = COMMAND.match(line)
            if command:
                self.steps.append((command.group(1), []))
            else:
                assert self.steps, f"{page.name}: a sample must start with a command: {line!r}"
                self.steps[-1][1].append(line)


def samples() -> list[Sample]:
    found = []
    for page in sorted([*DOCS.glob("*.md"), ROOT / "README.md"]):
        found += [Sample(page, match) for match in MARKER.finditer(page.read_text())]
    return found


class Session:
    """The samples of one scenario on one page, run in order in one project: a later
    sample reads what an earlier one ran. Run ids are matched by order of appearance."""

    def __init__(self, project: Path, with_tools: bool = False) -> None:
        self.project = project
        self.with_tools = with_tools  # the real aider and codex on PATH
        self.shown_ids: dict[str, str] = {}  # the sample's id -> RUN-n
        self.real_ids: dict[str, str] = {}  # the real id -> RUN-n
        self.status = 0

    def run(self, command: str) -> list[str]:
        """Run one command of a sample (its run ids made real); return what it printed."""
        for shown, label in self.shown_ids.items():
            real = next((key for key, value in self.real_ids.items() if value == label), None)
            if real is not None:
                command = command.replace(shown, real)
        words = shlex.split(command, comments=True)
        environment = {
            "PATH": f"{TOOLS}:{PATH}" if self.with_tools else PATH,
            "COLUMNS": "120",
            "XDG_CACHE_HOME": str(self.project.parent),
        }
        while "=" in words[0]:
            name, value = words.pop(0).split("=", 1)
            environment[name] = value
        if words == ["echo", "$?"]:
            return [str(self.status)]
        assert words[0] == "orchestra", command
        done = run_orchestra(*words[1:], cwd=self.project, env=environment)
        self.status = done.returncode
        printed = (done.stdout + done.stderr).replace(str(self.project), SHOWN_PROJECT)
        printed = printed.replace(str(ROOT), SHOWN_CHECKOUT)
        return printed.splitlines()

    def as_shown(self, lines: list[str]) -> list[str]:
        """``lines`` with the sample's run ids for the real ones: what an update writes."""
        if not lines:
            return []
        shown = {label: run_id for run_id, label in self.shown_ids.items()}
        text = "\n".join(lines)
        text = RUN_ID.sub(
            lambda match: shown.get(self.real_ids[match.group()], match.group()), text
        )
        return text.split("\n")

    def normalised(self, lines: list[str], ids: dict[str, str]) -> list[str]:
        """``lines`` with what differs from run to run made alike."""
        text = "\n".join(lines)
        for run_id in RUN_ID.findall(text):
            ids.setdefault(run_id, f"RUN-{len(ids) + 1}")
        text = RUN_ID.sub(lambda match: ids[match.group()], text)
        text = re.sub(r"\b\d\d:\d\d:\d\d\b", "00:00:00", text)
        text = re.sub(r"\b\d{4}-\d\d-\d\d\b", "2026-01-01", text)
        text = re.sub(r"\btook [0-9][0-9:.]*s?", "took 0s", text)
        text = re.sub(r"\b\d+\.\ds\b", "0.0s", text)
        text = re.sub(r'"(seconds|created_at|started_at|ended_at)": [0-9.]+', r'"\1": 0', text)
        text = re.sub(r"^[0-9a-f]{7,40} ", "0000000 ", text, flags=re.M)
        text = re.sub(r"process group \d+", "process group 1", text)
        return text.splitlines()


def matches(shown: list[str], real: list[str], in_any_order: bool) -> bool:
    """Whether ``real`` is what ``shown`` shows; a ``…`` line stands for any lines."""
    if "…" not in shown:
        return Counter(shown) == Counter(real) if in_any_order else shown == real
    if in_any_order:
        return not Counter(line for line in shown if line != "…") - Counter(real)
    pattern = "".join("(?:.*\n)*?" if line == "…" else re.escape(line) + "\n" for line in shown)
    return re.fullmatch(pattern, "\n".join(real) + "\n") is not None


def kept(shown: list[str], shown_lines: list[str], real: list[str], real_lines: list[str]):
    """What an update writes: each real line, but the sample's own line where that is the
    same once made alike (its time, its durations), so that an update changes only what
    changed."""
    unused = dict(enumerate(shown_lines))
    written = []
    for line, alike in zip(real, real_lines, strict=True):
        index = next((i for i, other in unused.items() if other == alike), None)
        written.append(line if index is None else shown[index])
        unused.pop(index, None)
    return written


def concurrent(command: str) -> bool:
    """A run's console lines of tasks running side by side come in either order."""
    words = command.split()
    return words[1] in ("run", "resume") and not {"-q", "--quiet", "--json"} & set(words)


def sessions() -> dict[tuple[str, str], list[Sample]]:
    grouped: dict[tuple[str, str], list[Sample]] = {}
    for sample in samples():
        grouped.setdefault((sample.page.name, sample.scenario), []).append(sample)
    return grouped


@pytest.mark.parametrize("key", sorted(sessions()), ids=lambda key: f"{key[0]}:{key[1]}")
def test_the_console_samples_are_what_the_commands_print(key, tmp_path):
    page, scenario = key
    session = Session(SCENARIOS[scenario](tmp_path / "tour"), scenario == "installed-tools")
    rewritten: list[tuple[Sample, str]] = []
    for sample in sessions()[key]:
        written = []
        for command, shown in sample.steps:
            real = session.run(command)
            shown_lines = session.normalised(shown, session.shown_ids)
            real_lines = session.normalised(real, session.real_ids)
            written += [
                f"$ {command}",
                *kept(shown, shown_lines, session.as_shown(real), real_lines),
            ]
            if UPDATE and "…" not in shown:
                continue
            if any(line.startswith("attempts are not sandboxed") for line in real):
                pytest.skip("bubblewrap does not work here; the samples show it working")
            assert matches(shown_lines, real_lines, concurrent(command)), (
                f"docs/{page}: `{command}` prints, made alike:\n"
                + "\n".join(real_lines)
                + "\n\nbut the sample shows:\n"
                + "\n".join(shown_lines)
            )
        if UPDATE and "…" not in sample.text.splitlines():
            rewritten.append((sample, "\n".join(written) + "\n"))
    if rewritten:
        _rewrite(rewritten[0][0].page, rewritten)


def _rewrite(path: Path, rewritten: list[tuple[Sample, str]]) -> None:
    """Put the new text of each sample in ``path``, found again in the page as it is now
    (others may have edited it meanwhile) by its old text."""
    text = path.read_text()
    blocks = {match.group(2): match.span(2) for match in MARKER.finditer(text)}
    spans = [(blocks[sample.text], new) for sample, new in rewritten if sample.text in blocks]
    for (start, end), new in sorted(spans, reverse=True):
        text = text[:start] + new + text[end:]
    path.write_text(text)


def test_the_samples_cover_the_commands_a_newcomer_runs_first():
    covered = {sample.steps[0][0].split()[1] for sample in samples()}
    covered |= {command.split()[1] for sample in samples() for command, _ in sample.steps}

    assert {"run", "show", "runs", "status", "tools"} <= covered


def test_a_changed_line_is_found(tmp_path):
    """The control: a sample that lacks a line the command prints does not match."""
    session = Session(empty_project(tmp_path / "tour"))
    real = session.normalised(session.run("orchestra runs --state bogus"), session.real_ids)

    assert matches(real, real, in_any_order=False)
    assert not matches(real[:-1], real, in_any_order=False)
    assert not matches(real[1:], real, in_any_order=True)
    assert matches([real[0], "…"], real, in_any_order=False)
