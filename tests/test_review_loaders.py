"""Review gates in the formats orchestra reads (issue 24): a ``review`` in a UET bundle
or a task-master task is the task's review when it has orchestra's shape and metadata
otherwise; the real files' review-like fields (a bundle's ``gate``, ``completion_gate``)
stay metadata; and ``orchestra convert`` writes a review as TOML that loads back to it."""

import json
from pathlib import Path

import pytest

from orchestra.loaders import load, load_source
from orchestra.loaders.reviews import KEPT
from orchestra.loaders.tomlwriter import to_toml
from orchestra.models import Defaults, Review, Task, Workstream
from orchestra.spec import load_workstream
from orchestra.testing import run_orchestra

# CI copies ../shared next to the clone, so this is the same in a fresh clone
UET_BUNDLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "uet-bundles"
GUIDELINES = "Look for:\n- secrets in logs\n- tests that test nothing"


def write_json(path: Path, document) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


def tasks_of(path: Path, plugin_host, **options) -> dict[str, Task]:
    return {task.id: task for task in load(path, plugin_host, options=options).workstream.tasks}


def notices_of(path: Path, *arguments: str) -> list[str]:
    result = run_orchestra("validate", str(path), *arguments, cwd=path.parent)
    assert result.returncode == 0, result.stderr
    return [line.removeprefix("notice: ") for line in result.stderr.splitlines()]


def converts_back(path: Path, plugin_host, *arguments: str, **options) -> str:
    """Convert ``path`` with the real CLI; return the TOML, once it loads back to what
    the file itself loads to."""
    output = path.with_name(path.stem + ".converted.toml")
    result = run_orchestra(
        "convert", str(path), *arguments, "--force", "-o", str(output), cwd=path.parent
    )
    assert result.returncode == 0, result.stderr
    assert load_workstream(output) == load(path, plugin_host, options=options).workstream
    return output.read_text()


# -- uet-bundle -----------------------------------------------------------------------


def test_a_bundles_review_in_orchestras_shape_is_its_tasks_review(tmp_path, plugin_host):
    path = write_json(
        tmp_path / "ws-api.json",
        {
            "id": "ws-api",
            "tasks": ["Add the /health endpoint"],
            "tool": "aider",
            "gate": 1,
            "review": {
                "tools": ["codex", "claude-code"],
                "prompt": GUIDELINES,
                "required": False,
                "max_rounds": 3,
                "timeout": 600,
                "_comment_review": "codex reads what aider writes",
            },
        },
    )

    task = tasks_of(path, plugin_host)["ws-api"]

    assert task.review == Review(
        tools=("codex", "claude"), prompt=GUIDELINES, required=False, max_rounds=3, timeout=600
    )
    assert task.metadata == {"gate": 1}
    assert notices_of(path) == [
        f"{path}: kept as task metadata, orchestra does not use them: gate",
        f"{path}: tool 'claude-code' is orchestra's 'claude'",
    ]


def test_a_bundles_review_is_each_steps_unless_the_step_has_its_own(tmp_path, plugin_host):
    path = write_json(
        tmp_path / "ws-steps.json",
        {
            "id": "ws-steps",
            "review": {"tools": ["codex"]},
            "execution": {"parallel": True},
            "acceptance_tests": ["test -f NOTES.md"],
            "steps": [
                {"id": "write", "tasks": ["Write NOTES.md"], "tool": "aider"},
                {"id": "format", "tasks": ["Format it"], "review": False},
                {"id": "sign", "tasks": ["Sign it"], "review": {"tools": ["gemini"]}},
            ],
        },
    )

    tasks = tasks_of(path, plugin_host)

    assert {task_id: task.review for task_id, task in tasks.items()} == {
        "ws-steps.write": Review(tools=("codex",)),
        "ws-steps.format": Review(enabled=False),
        "ws-steps.sign": Review(tools=("gemini",)),
        # the bundle's acceptance tests change nothing: there is nothing to review
        "ws-steps.acceptance": None,
    }


def test_execution_steps_carry_their_review(tmp_path, plugin_host):
    path = write_json(
        tmp_path / "ws-exec.json",
        {
            "id": "ws-exec",
            "tool": "aider",
            "execution_steps": [
                {"id": "codemod", "command": "python codemod.py", "review": {"tools": ["codex"]}},
                {"id": "explain", "description": "Document the change", "review": True},
            ],
        },
    )

    tasks = tasks_of(path, plugin_host)

    assert tasks["ws-exec.codemod"].review == Review(tools=("codex",))
    assert tasks["ws-exec.explain"].review == Review()


@pytest.mark.parametrize(
    "review",
    ["Alice signs off", ["codex"], {"approver": "alice", "approvals": 2}, 1],
    ids=["a-sentence", "a-list", "an-object-of-other-keys", "a-number"],
)
def test_a_review_of_another_shape_is_kept_as_metadata(tmp_path, plugin_host, review):
    path = write_json(
        tmp_path / "ws-people.json",
        {
            "id": "ws-people",
            "steps": [
                {"id": "one", "tasks": ["Do it"], "review": review},
                {"id": "two", "tasks": ["Do more"]},
            ],
        },
    )

    tasks = tasks_of(path, plugin_host)

    assert tasks["ws-people.one"].review is None
    assert tasks["ws-people.one"].metadata == {"review": review}
    assert "review" not in tasks["ws-people.two"].metadata
    assert notices_of(path) == [f"{path}: {KEPT}"]


def test_a_review_with_a_misspelled_key_is_an_error_not_metadata(tmp_path):
    path = write_json(
        tmp_path / "ws-typo.json",
        {"id": "ws-typo", "tasks": ["Do it"], "review": {"tools": "codex", "max_round": 2}},
    )

    result = run_orchestra("validate", str(path), cwd=tmp_path)

    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {path}: task 'ws-typo': field 'review.tools': expected an array, "
        "got a string ('codex')",
        f"error: {path}: task 'ws-typo': field 'review.max_round': unknown key 'max_round' "
        "(did you mean 'max_rounds'?)",
    ]


#: the real bundles that load on their own (one depends on a bundle that is not here)
REAL_SOURCES = [
    "set-refactor",
    *sorted(
        path.relative_to(UET_BUNDLES).as_posix()
        for path in [*UET_BUNDLES.glob("*.json"), *UET_BUNDLES.glob("variants/*.json")]
        if path.name != "ws-uet-phase-e-resilience.json"
    ),
]


@pytest.mark.parametrize("source", REAL_SOURCES)
def test_the_real_bundles_review_like_fields_stay_metadata(plugin_host, source):
    """Real bundles have no field asking a tool for a review: ``gate`` is how many
    approvals people give, ``completion_gate`` rules for people; both stay metadata."""
    assert UET_BUNDLES.is_dir(), f"{UET_BUNDLES} is not here: copy the shared data beside"
    tasks = load_source(str(UET_BUNDLES / source), plugin_host).workstream.tasks

    assert [task.id for task in tasks if task.review is not None] == []
    assert all("gate" in task.metadata for task in tasks)


def test_the_notice_names_the_real_review_like_fields_kept(tmp_path):
    (kept, *_) = notices_of(UET_BUNDLES / "variants" / "execution-steps-ws-001.json")
    names = kept.split("orchestra does not use them: ", 1)[1].split(", ")
    assert {"gate", "completion_gate"} <= set(names)


# -- task-master ----------------------------------------------------------------------

TASKS = {
    "master": {
        "tasks": [
            {
                "id": 1,
                "title": "Add the export",
                "status": "pending",
                "dependencies": [],
                "review": {"tools": ["codex"], "prompt": GUIDELINES, "self_review": True},
                "subtasks": [
                    {"id": 1, "title": "Write the CSV writer", "status": "pending"},
                    {
                        "id": 2,
                        "title": "Wire it to the CLI",
                        "status": "pending",
                        "review": {"tools": ["claude"], "routing": "cheapest", "enabled": False},
                    },
                ],
            },
            {
                "id": 2,
                "title": "Document the export",
                "status": "review",
                "dependencies": [1],
                "review": "Bob reads the docs",
            },
            {"id": 3, "title": "Announce it", "status": "pending", "review": False},
        ]
    },
    "feature-x": {"tasks": [{"id": 1, "title": "X", "status": "review", "review": True}]},
}


def test_a_task_master_tasks_review_in_orchestras_shape_is_its_review(tmp_path, plugin_host):
    path = write_json(tmp_path / "tasks.json", TASKS)

    tasks = tasks_of(path, plugin_host)

    assert {task_id: task.review for task_id, task in tasks.items()} == {
        "1.1": None,  # a parent's review is not its subtasks'
        "1.2": Review(tools=("claude",), routing="cheapest", enabled=False),
        "1": Review(tools=("codex",), prompt=GUIDELINES, self_review=True),
        "2": None,
        "3": Review(enabled=False),
    }
    assert tasks["2"].metadata == {"status": "review", "review": "Bob reads the docs"}
    assert notices_of(path) == [
        f"{path}: {KEPT}",
        f"{path}: 1 task(s) in status 'review' (waiting for a person's review in "
        "task-master) are loaded as work to do; the status is kept as metadata",
    ]


def test_every_tag_keeps_its_tasks_reviews(tmp_path, plugin_host):
    path = write_json(tmp_path / "tasks.json", TASKS)

    tasks = tasks_of(path, plugin_host, tag="*")

    assert tasks["feature-x.1"].review == Review()
    assert tasks["master.3"].review == Review(enabled=False)
    assert notices_of(path, "--tag", "*")[-1] == (
        f"{path}: 2 task(s) in status 'review' (waiting for a person's review in "
        "task-master) are loaded as work to do; the status is kept as metadata"
    )


# -- convert --------------------------------------------------------------------------


def test_convert_writes_a_bundles_reviews_as_toml_that_loads_back(tmp_path, plugin_host):
    path = write_json(
        tmp_path / "ws-plan.json",
        [
            {
                "id": "ws-a",
                "tasks": ["Do a"],
                "review": {"tools": ["codex", "claude-code"], "prompt": GUIDELINES},
            },
            {
                "id": "ws-b",
                "depends_on": ["ws-a"],
                "review": {"tools": ["codex"], "max_rounds": 3, "timeout": "15m"},
                "steps": [
                    {"id": "one", "tasks": ["x"]},
                    {"id": "two", "tasks": ["y"], "review": False},
                    {"id": "three", "tasks": ["z"], "review": "Alice signs off"},
                ],
            },
        ],
    )

    text = converts_back(path, plugin_host)

    # a prompt of several lines is a table of its own, written as a person would
    assert '[tasks.review]\ntools = ["codex", "claude"]\nprompt = \'\'\'\nLook for:\n' in text
    assert 'review = { tools = ["codex"], max_rounds = 3, timeout = "15m" }' in text
    assert "review = false" in text
    assert '[tasks.metadata]\nreview = "Alice signs off"' in text


def test_convert_writes_a_task_master_files_reviews_as_toml_that_loads_back(tmp_path, plugin_host):
    path = write_json(tmp_path / "tasks.json", TASKS)

    converts_back(path, plugin_host)
    converts_back(path, plugin_host, "--tag", "*", tag="*")


def test_convert_keeps_the_defaults_review_and_a_task_turning_it_off(tmp_path, plugin_host):
    path = tmp_path / "plan.toml"
    path.write_text(
        'id = "plan"\n\n[defaults]\n'
        'review = { tools = ["codex", "claude"], prompt = "Read the tests first.", '
        "required = false, max_rounds = 1 }\n\n"
        '[[tasks]]\nid = "a"\nprompt = "Do a"\n\n'
        '[[tasks]]\nid = "b"\nprompt = "Do b"\nreview = false\n\n'
        '[[tasks]]\nid = "c"\nprompt = "Do c"\nreview = true\n'
    )

    text = converts_back(path, plugin_host)

    assert (
        '[defaults]\nreview = { tools = ["codex", "claude"], prompt = "Read the tests first.", '
        "required = false, max_rounds = 1 }\n"
    ) in text
    assert 'id = "b"\nprompt = "Do b"\nreview = false\n' in text
    assert 'id = "c"\nprompt = "Do c"\nreview = true\n' in text


@pytest.mark.parametrize(
    "review",
    [
        Review(),
        Review(enabled=False),
        Review(tools=("codex",), enabled=False),
        Review(tools=("codex", "gemini"), prompt='quotes " and \\ and a tab\t', timeout=0.5),
        Review(prompt=GUIDELINES + "\nends with a quote '", self_review=True, routing="rr"),
        Review(prompt="''' three quotes\nand lines", required=False, max_rounds=5),
    ],
)
def test_to_toml_round_trips_every_review(tmp_path, review):
    workstream = Workstream(
        id="w",
        defaults=Defaults(review=review),
        tasks=(
            Task(id="t", prompt="Do t", review=review, metadata={"review": "kept"}),
            Task(id="u", prompt="Do u", review=Review(enabled=False)),
        ),
    )
    path = tmp_path / "w.toml"
    path.write_text(to_toml(workstream))

    assert load_workstream(path) == workstream
