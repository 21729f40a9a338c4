"""Loading workstream files: every field, and every mistake reported on its own line."""

import textwrap

import pytest

from orchestra.errors import OrchestraError, SpecError, WorkstreamInvalid
from orchestra.models import Backoff, Check, FileScope
from orchestra.spec import load_workstream


def write(tmp_path, text, name="ws.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text):
    """Return the error lines loading ``text`` produces (it must fail)."""
    path = write(tmp_path, text)
    with pytest.raises(OrchestraError) as caught:
        load_workstream(path)
    lines = caught.value.lines()
    for line in lines:
        assert "\n" not in line and line.startswith(str(path))
    return lines


def test_every_field_loads_into_the_models(tmp_path):
    path = write(
        tmp_path,
        """
        id = "auth"
        title = "Add login"
        description = "The login feature"

        [defaults]
        tools = ["aider", "codex"]
        routing = "auto"
        capabilities = ["edit"]
        max_attempts = 3
        timeout = "10m"
        idle_timeout = "90s"
        backoff = { initial = "2s", factor = 2, max = "1m", jitter = true }
        env = { CI = "1" }

        [[tasks]]
        id = "models"
        title = "User model"
        prompt = "Create src/models.py with a User class"
        files = { write = ["src/models.py"], read = ["docs/spec.md"], create = ["src/new_*.py"], forbidden = [".env"] }
        capabilities = ["edit", "python"]
        checks = ["python -m pytest -q tests/test_models.py", { command = "ruff check . && ruff format --check .", shell = true, name = "lint", timeout = "2m" }]
        priority = 5
        env = { DEBUG = "1" }
        metadata = { ticket = "ORC-1" }

        [[tasks]]
        id = "api"
        depends_on = ["models"]
        tool = "codex"
        prompt = "Add the login endpoint"
        max_attempts = 1
        timeout = 300
        backoff = { initial = "1s" }

        [[tasks]]
        id = "format"
        depends_on = ["api"]
        command = ["ruff", "format", "."]

        [[tasks]]
        id = "report"
        depends_on = ["format"]
        command = "git diff --stat | tee diffstat.txt"
        shell = true
        """,
    )
    workstream = load_workstream(path)
    assert (workstream.id, workstream.title, workstream.description) == (
        "auth",
        "Add login",
        "The login feature",
    )
    defaults = workstream.defaults
    assert defaults.tools == ("aider", "codex") and defaults.routing == "auto"
    assert (defaults.timeout, defaults.idle_timeout, defaults.max_attempts) == (600.0, 90.0, 3)
    assert defaults.backoff == Backoff(initial=2.0, factor=2.0, max=60.0, jitter=True)
    models, api, fmt, report = workstream.tasks
    assert models.kind == "prompt" and models.title == "User model"
    assert models.files == FileScope(
        read=("docs/spec.md",),
        write=("src/models.py",),
        create=("src/new_*.py",),
        forbidden=(".env",),
    )
    assert models.checks == (
        Check(command=("python", "-m", "pytest", "-q", "tests/test_models.py")),
        Check(
            command="ruff check . && ruff format --check .", shell=True, name="lint", timeout=120.0
        ),
    )
    assert models.priority == 5 and models.env == {"DEBUG": "1"}
    assert models.metadata == {"ticket": "ORC-1"}
    assert models.tool is None and models.timeout is None  # inherited from [defaults] later
    assert api.depends_on == ("models",) and api.tool == "codex" and api.timeout == 300.0
    assert api.backoff == Backoff(initial=1.0)
    assert fmt.kind == "command" and fmt.command == ("ruff", "format", ".")
    assert report.shell and report.command == "git diff --stat | tee diffstat.txt"
    assert workstream.source == str(path)


def test_all_problems_are_reported_at_once_with_task_and_field(tmp_path):
    lines = problems(
        tmp_path,
        """
        id = "auth"
        titel = "typo"

        [defaults]
        timeout = "10 minutes"
        max_attempts = "3"

        [[tasks]]
        id = "models"
        prompt = "x"
        dependson = ["api"]
        files = { write = ["/etc/passwd", "../outside.py"] }

        [[tasks]]
        id = "api"
        depends_on = ["modles"]
        command = "make test"
        checks = ["pytest && ruff", 5]

        [[tasks]]
        id = "format"
        command = ["ruff", 3]
        env = { A = 1 }
        """,
    )
    joined = "\n".join(lines)
    expected = [
        "field 'titel': unknown key 'titel' (did you mean 'title'?)",
        "field 'defaults.timeout': '10 minutes' is not a duration",
        "field 'defaults.max_attempts': expected an integer, got a string ('3')",
        "task 'models': field 'dependson': unknown key 'dependson' (did you mean 'depends_on'?)",
        "task 'api': field 'checks[0]': check 'pytest && ruff' uses shell syntax (&&)",
        "task 'api': field 'checks[1]': expected a command string or a table with 'command'",
        "task 'format': field 'command': expected an argument list of strings, got an integer (3)",
        "task 'format': field 'env': expected a string for 'A', got an integer (1)",
        "task 'api': field 'depends_on': unknown task 'modles' (did you mean 'models'?)",
    ]
    for fragment in expected:
        assert fragment in joined
    assert len(lines) == len(expected)


def test_semantic_problems_are_all_reported(tmp_path):
    lines = problems(
        tmp_path,
        """
        id = "auth"
        [[tasks]]
        id = "models"
        prompt = "x"
        files = { write = ["/etc/passwd", "src/../../x"], forbidden = [""] }
        max_attempts = 0
        timeout = "0s"
        [[tasks]]
        id = "api"
        command = "make test"
        [[tasks]]
        id = "api"
        prompt = "again"
        [[tasks]]
        id = "bad id!"
        prompt = "x"
        [[tasks]]
        id = "neither"
        [[tasks]]
        id = "both"
        prompt = "x"
        command = ["true"]
        tool = "shell"
        tools = ["shell"]
        """,
    )
    joined = "\n".join(lines)
    for fragment in [
        "task 'models': field 'files.write': '/etc/passwd': absolute path",
        "task 'models': field 'files.write': 'src/../../x': '..' leaves the repository",
        "task 'models': field 'files.forbidden': '': empty path",
        "task 'models': field 'max_attempts': must be at least 1",
        "task 'models': field 'timeout': must be longer than zero",
        "task 'api': field 'command': a command string needs shell = true",
        "task 'api': field 'id': duplicate task id",
        "task 'bad id!': field 'id': invalid id 'bad id!'",
        "task 'neither': needs a 'prompt' (for an AI tool) or a 'command' (to run)",
        "task 'both': field 'command': has both 'prompt' and 'command'",
        "task 'both': field 'tools': set either 'tool' (pin one) or 'tools'",
    ]:
        assert fragment in joined


def test_a_cycle_is_printed_as_a_chain(tmp_path):
    lines = problems(
        tmp_path,
        """
        id = "w"
        [[tasks]]
        id = "a"
        prompt = "x"
        depends_on = ["c"]
        [[tasks]]
        id = "b"
        prompt = "x"
        depends_on = ["a"]
        [[tasks]]
        id = "c"
        prompt = "x"
        depends_on = ["b"]
        [[tasks]]
        id = "self"
        prompt = "x"
        depends_on = ["self"]
        """,
    )
    assert any(
        "task 'a': field 'depends_on': dependency cycle: a -> c -> b -> a" in line for line in lines
    )
    assert any(
        "task 'self': field 'depends_on': a task cannot depend on itself" in line for line in lines
    )


def test_graph_problems_are_reported_alongside_type_errors(tmp_path):
    lines = problems(
        tmp_path,
        """
        id = "w"
        [[tasks]]
        id = "a"
        prompt = 42
        [[tasks]]
        id = "b"
        prompt = "x"
        depends_on = ["zzz"]
        """,
    )
    joined = "\n".join(lines)
    assert "task 'a': field 'prompt': expected a string, got an integer (42)" in joined
    assert "task 'b': field 'depends_on': unknown task 'zzz'" in joined


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('id = "w"\n', "no tasks: add at least one [[tasks]] table"),
        ('id = "w"\ntasks = []\n', "no tasks"),
        (
            'title = "no id"\n[[tasks]]\nid = "a"\nprompt = "x"\n',
            "field 'id': missing required key",
        ),
        ('id = "w"\ntasks = "a"\n', "field 'tasks': expected an array, got a string ('a')"),
        ('id = "w"\ntasks = [1]\n', "task '#1': expected a [[tasks]] table, got an integer (1)"),
        ('id = "w"\n[[tasks]]\nprompt = "x"\n', "task '#1': field 'id': missing required key"),
        ('id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\nshell = "yes"\n', "expected true or false"),
        ('id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\npriority = 1.5\n', "expected an integer"),
        ('id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\ndepends_on = "b"\n', "expected an array"),
        ('id = "w"\n[[tasks]]\nid = "a"\nprompt = "   "\n', "field 'prompt': empty prompt"),
        ('id = "w"\n[[tasks]]\nid = "a"\ncommand = []\n', "field 'command': empty command"),
        (
            'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\nfiles = ["a.py"]\n',
            "field 'files': expected a table",
        ),
        (
            'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\nfiles = { writes = ["a"] }\n',
            "(did you mean 'write'?)",
        ),
        (
            'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\nbackoff = { factor = 0.5 }\n',
            "backoff.factor': must be at least 1",
        ),
        (
            'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\ntimeout = "soon"\n',
            "'soon' is not a duration",
        ),
        ('id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\ntimeout = true\n', "expected a duration"),
        ('id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\ntools = []\n', "allow at least one tool"),
        (
            'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\nchecks = ["echo \'unclosed"]\n',
            "cannot split check",
        ),
        (
            'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\nshell = true\n',
            "shell = true applies to a 'command'",
        ),
        (
            'id = "w"\n[[tasks]]\nid = "a"\ncommand = ["x"]\nshell = true\n',
            "write the command as one string",
        ),
    ],
)
def test_each_mistake_gets_a_clear_line(tmp_path, text, fragment):
    assert any(fragment in line for line in problems(tmp_path, text))


def test_unreadable_and_malformed_files_are_one_line_errors(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_workstream(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match="is a directory"):
        load_workstream(tmp_path)
    broken = write(tmp_path, 'id = "w"\n[[tasks]\n')
    with pytest.raises(SpecError, match=r"invalid TOML: .*line 2"):
        load_workstream(broken)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'id = "\xff"\n')
    with pytest.raises(SpecError, match="not UTF-8"):
        load_workstream(binary)


def test_invalid_workstream_counts_its_problems(tmp_path):
    path = write(tmp_path, 'id = "w"\n[[tasks]]\nid = "a"\n[[tasks]]\nid = "b"\n')
    with pytest.raises(WorkstreamInvalid) as caught:
        load_workstream(path)
    assert len(caught.value.errors) == 2
    assert str(caught.value) == f"{path}: 2 problems found"


@pytest.mark.parametrize(
    ("check", "operator"),
    [("pytest>out.txt", ">"), ("make test&&echo ok", "&&"), ("x 2>&1", ">&"), ("(cd a)", "( )")],
)
def test_shell_syntax_in_a_check_is_found_even_without_spaces(tmp_path, check, operator):
    text = f'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\nchecks = [{check!r}]\n'.replace("'", '"')
    lines = problems(tmp_path, text)
    assert any(f"uses shell syntax ({operator})" in line for line in lines)


def test_quoted_operators_are_plain_arguments(tmp_path):
    path = write(
        tmp_path,
        """id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\nchecks = ["python -c 'assert 2>1'"]\n""",
    )
    assert load_workstream(path).tasks[0].checks[0].command == ("python", "-c", "assert 2>1")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("nan", "expected a finite"),
        ("inf", "expected a finite"),
        ('"' + "9" * 400 + 's"', "is not a duration"),
        ('"٣s"', "is not a duration"),
    ],
)
def test_durations_must_be_finite_ascii_numbers(tmp_path, value, fragment):
    assert any(
        fragment in line
        for line in problems(
            tmp_path, f'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\ntimeout = {value}\n'
        )
    )


def test_names_with_a_trailing_newline_are_refused(tmp_path):
    lines = problems(tmp_path, 'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\ntool = "x\\n"\n')
    assert any("field 'tool': invalid name" in line for line in lines)


def test_booleans_print_as_toml_writes_them(tmp_path):
    lines = problems(tmp_path, 'id = "w"\n[[tasks]]\nid = "a"\nprompt = true\n')
    assert any("expected a string, got a boolean (true)" in line for line in lines)


def test_an_empty_id_names_the_task_by_position(tmp_path):
    lines = problems(
        tmp_path, 'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\n[[tasks]]\nid = ""\nprompt = "x"\n'
    )
    assert any("task '#2': field 'id': invalid id ''" in line for line in lines)


def test_an_overlong_integer_is_a_toml_error_in_plain_words(tmp_path):
    lines = problems(
        tmp_path, 'id = "w"\n[[tasks]]\nid = "a"\nprompt = "x"\npriority = 1' + "0" * 5000 + "\n"
    )
    assert lines == [f"{tmp_path / 'ws.toml'}: invalid TOML: an integer literal is too long"]
