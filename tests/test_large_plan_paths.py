"""The quick paths that keep `validate` and `plan` of 100,000 tasks fast say what the
general ones say: a task table structured without cattrs, ids checked at once, the
critical path walked back from its end, and the JSON plan written from pieces."""

import itertools
import json
import random
import subprocess
import sys

import pytest

from orchestra import graph
from orchestra.builtin import routing, scheduling, shell
from orchestra.cli import plan as cli_plan
from orchestra.cli.plan import plan_as_dict, render_json
from orchestra.config import Project, resolve_settings
from orchestra.models import Defaults, Review, Task, Workstream
from orchestra.planning import make_plan
from orchestra.plugin.host import PluginHost
from orchestra.spec import converter
from orchestra.spec.checks import BRANCHABLE_ID, ID_PATTERN, _unbranchable
from orchestra.spec.plain import plain_task, plain_workstream
from orchestra.spec.structuring import _class_hook
from orchestra.testing import ScriptedTool, ToolsPlugin

#: task tables of plain keys and values, which ``plain_task`` structures itself
PLAIN = [
    {"id": "a", "command": ["make", "test"], "depends_on": ["b", "c"]},
    {"id": "a", "command": "make test | tee log", "shell": True, "title": "Déjà vu ✓"},
    {"id": "a", "prompt": "Do it", "tools": ["alpha", "beta"], "capabilities": ["python"]},
    {"id": "a", "prompt": "p", "tool": "alpha", "routing": "auto", "workspace": "inplace"},
    {"id": "a", "command": ["true"], "priority": 7, "max_attempts": 2},
    {"id": "a", "command": ["true"], "priority": -(2**63)},
    {"id": "", "command": []},
]
#: tables it leaves to cattrs, which structures them or says what is wrong
OTHERS = [
    {"id": "a", "command": ["true"], "priority": True},
    {"id": "a", "command": ["true"], "priority": 2**63},
    {"id": "a", "command": ["true"], "shell": 1},
    {"id": "a", "command": ["true", 1]},
    {"id": "a", "command": ["true"], "depends_on": "b"},
    {"id": "a", "command": ["true"], "title": None},
    {"id": 1, "command": ["true"]},
    {"command": ["true"]},
    {"id": "a", "command": ["true"], "timeout": "10m"},
    {"id": "a", "command": ["true"], "unknown": 1},
]


@pytest.mark.parametrize("table", PLAIN)
def test_aplain_task_is_the_task_cattrs_makes_of_its_table(table):
    task = plain_task(table)
    made = _class_hook(Task, converter())(table, Task)
    assert task == made
    assert [type(getattr(task, key)) for key in table] == [
        type(getattr(made, key)) for key in table
    ]
    assert converter().structure(table, Task) == made


@pytest.mark.parametrize("table", OTHERS)
def test_any_other_table_is_left_to_cattrs(table):
    assert plain_task(table) is None


#: workstream documents of plain strings and plain task tables
PLAIN_DOCUMENTS = [
    {"id": "w", "tasks": [{"id": "a", "command": ["true"]}]},
    {"id": "w", "title": "T", "description": "D", "tasks": PLAIN[:5]},
]
#: documents left to cattrs
OTHER_DOCUMENTS = [
    {"id": "w", "tasks": []},
    {"id": "w"},
    {"id": 1, "tasks": [{"id": "a", "command": ["true"]}]},
    {"id": "w", "title": None, "tasks": [{"id": "a", "command": ["true"]}]},
    {"id": "w", "defaults": {}, "tasks": [{"id": "a", "command": ["true"]}]},
    {"id": "w", "unknown": "x", "tasks": [{"id": "a", "command": ["true"]}]},
    {"id": "w", "tasks": [{"id": "a", "command": ["true"]}, OTHERS[0]]},
    {"id": "w", "tasks": [{"id": "a", "command": ["true"]}, "not a table"]},
]


@pytest.mark.parametrize("document", PLAIN_DOCUMENTS)
def test_a_plain_workstream_is_the_one_cattrs_makes_of_its_document(document):
    made = converter().structure(document, Workstream)
    assert plain_workstream(document) == made
    assert [type(task.command) for task in plain_workstream(document).tasks] == [
        type(task.command) for task in made.tasks
    ]


@pytest.mark.parametrize("document", OTHER_DOCUMENTS)
def test_any_other_workstream_is_left_to_cattrs(document):
    assert plain_workstream(document) is None


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"sandbox": "none", "db": "x.db", "max_parallel": 3, "routing": "auto"},
        {"scheduler": "priority", "executor": "local", "max_attempts": 2},
    ],
)
def test_a_plain_configuration_is_the_one_cattrs_makes(document):
    from orchestra.config import Config, _plain_config

    assert _plain_config(document) == converter().structure(document, Config)


@pytest.mark.parametrize(
    "document", [{"max_parallel": True}, {"timeout": "10m"}, {"sinks": ["console"]}]
)
def test_any_other_configuration_is_left_to_cattrs(document):
    from orchestra.config import _plain_config

    assert _plain_config(document) is None


def test_a_run_of_a_plain_workstream_imports_no_cattrs(tmp_path):
    """What spec/plain.py buys: `orchestra run` of a plain file in a plain project reads
    both without cattrs (its import and compiled functions: ~18 ms of every start)."""
    (tmp_path / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n')
    (tmp_path / "orchestra.toml").write_text('sandbox = "none"\n')
    probe = (
        "import sys\n"
        "from orchestra.cli import main\n"
        "sys.argv = ['orchestra', 'run', '--quiet', 'ws.toml']\n"
        "try:\n    main()\n"
        "except SystemExit as end:\n    assert end.code in (0, None), end.code\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'cattrs'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_every_id_the_quick_check_takes_is_one_the_full_check_takes():
    for length in range(6):
        for letters in itertools.product("aZ9._-\n/ ", repeat=length):
            task_id = "".join(letters)
            full = bool(ID_PATTERN.fullmatch(task_id)) and not _unbranchable(task_id)
            assert bool(BRANCHABLE_ID.fullmatch(task_id)) == full, repr(task_id)
    for task_id in ["a" * 200, "a" * 201, "a" * 199 + ".", "a." * 100, "a" * 198 + ".b"]:
        full = bool(ID_PATTERN.fullmatch(task_id)) and not _unbranchable(task_id)
        assert bool(BRANCHABLE_ID.fullmatch(task_id)) == full


def random_graph(generator: random.Random, size: int) -> dict[str, tuple[str, ...]]:
    """A random graph of ``size`` tasks, some listed before what they depend on, some
    dependencies twice."""
    names = [f"t{number}" for number in range(size)]
    dependencies = {}
    for position, name in enumerate(names):
        earlier = names[:position]
        needs = generator.sample(earlier, min(len(earlier), generator.randrange(4)))
        if needs and generator.random() < 0.2:
            needs.append(needs[0])
        dependencies[name] = tuple(needs)
    listed = list(dependencies.items())
    generator.shuffle(listed)
    return dict(listed)


def test_the_critical_path_from_levels_is_the_one_every_edge_gives():
    generator = random.Random(25)
    for size in [1, 2, 5, 30, 200] * 20:
        dependencies = random_graph(generator, size)
        levels = graph.levels(dependencies)
        assert graph.critical_path(dependencies, levels=levels) == graph.critical_path(dependencies)
        order = graph.topological_order(dependencies)
        assert graph.critical_path(dependencies, order=order, levels=levels) == (
            graph.critical_path(dependencies, order=order)
        )
        assert graph.waves(dependencies, levels) == graph.waves(dependencies)


@pytest.fixture
def host():
    """The built-ins and two scripted tools that can edit and review."""
    host = PluginHost()
    for module in (shell, routing, scheduling):
        host.register(module, name=module.__name__.rsplit(".", 1)[-1])
    capabilities = frozenset({"prompt", "edit", "review"})
    host.register(
        ToolsPlugin(
            ScriptedTool(name="alpha", capabilities=capabilities),
            ScriptedTool(name="beta", capabilities=capabilities),
        ),
        name="ai-tools",
    )
    return host


def test_the_json_plan_is_the_document_json_dumps_writes(host, tmp_path, monkeypatch):
    workstream = Workstream(
        id="w",
        title='Ünïcode "quoted" \\ title',
        tasks=(
            Task(id="a", prompt="p", title="Déjà vu ✓", tools=("alpha", "beta"), priority=3),
            Task(id="b", command=("true",), depends_on=("a",)),
            Task(id="c", command="echo 'x' | cat", shell=True, depends_on=("a", "b")),
            Task(id="d", command=("no-such-program-anywhere",), title="line\nbreak"),
            Task(id="e", prompt="p", review=Review(tools=("beta",)), depends_on=("c",)),
            Task(id="f", prompt="p", tool="alpha", review=Review(), priority=-2),
            Task(id="g", command=("true",), priority=True),
        ),
        defaults=Defaults(),
        source="w.toml",
    )
    project = Project(root=tmp_path)
    settings = resolve_settings(project, defaults=workstream.defaults, environ={})

    plan = make_plan(workstream, host, project, settings)

    assert plan.fallbacks and plan.reviewers and plan.cannot_run  # every field is written
    expected = json.dumps(plan_as_dict(plan), separators=(",", ":"))
    assert render_json(plan) == expected
    monkeypatch.setattr(cli_plan, "TASKS_A_PIECE", 2)  # in several pieces, and one of one
    assert render_json(plan) == expected


def test_the_quick_check_of_a_task_skips_no_field_the_full_checks_read():
    """``_only_a_command`` and ``_check_common`` pass over a task whose fields read by the
    checks are all unset: a check added for a field they do not list would be skipped
    for such a task. Every field of Task that the checks name must be listed."""
    import inspect
    import re

    import attrs

    from orchestra.spec import checks

    task_fields = {field.name for field in attrs.fields(Task)}
    listed = set(checks._COMMON_FIELDS.__reduce__()[1]) | set(
        checks._BESIDE_A_COMMAND.__reduce__()[1]
    )
    for function, name in ((checks._check_common, "values"), (checks._check_task, "task")):
        source = inspect.getsource(function)
        read = set(re.findall(rf"\b{name}\.(\w+)", source))
        read |= set(re.findall(r"[\"'](\w+)[\"']", source)) & task_fields
        assert read & task_fields <= listed | {"id", "command"}, function.__name__
