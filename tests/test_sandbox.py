"""The attempts' sandbox (bubblewrap): real `orchestra run` processes in real git repositories.

Each escape test has its task try one way out of its worktree (and then leave a file in it,
to show it ran); the user's checkout, the repository's metadata, what lies outside and the
run database must be exactly as they were. Without the sandbox, each of them gets out.
"""

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from orchestra.engine import sandbox
from orchestra.testing import make_git_repo, run_orchestra

BWRAP, _, UNUSABLE = sandbox.probe()
pytestmark = pytest.mark.skipif(
    BWRAP is None, reason=f"bubblewrap cannot confine processes on this machine: {UNUSABLE}"
)
#: every test asks for the sandbox outright: a machine that cannot give it fails the run
CONFINED = {"ORCHESTRA_SANDBOX": "bwrap"}
#: not the user's files: the repository's and orchestra's directories, the test's own files
OURS = (".git", ".orchestra", "ws.toml", "orchestra.toml")


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def rows(project: Path, query: str, *args):
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(query, args).fetchall()


@pytest.fixture
def project(tmp_path):
    """A user's repository (committed files, a hook-less .git) and a directory beside it."""
    repo = make_git_repo(tmp_path / "repo", {"README.md": "mine\n", "src/app.py": "VALUE = 1\n"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("not the task's\n")
    return repo


def user_state(repo: Path) -> dict:
    """What a task must not change: every file of the checkout (but orchestra's directory),
    the files beside the repository, the repository's config (bytes and time), hooks,
    HEAD and branches (the run's own left out)."""
    checkout = {
        str(path.relative_to(repo)): path.read_bytes()
        for path in sorted(repo.rglob("*"))
        if path.is_file() and path.relative_to(repo).parts[0] not in OURS
    }
    outside = repo.parent / "outside"
    config = repo / ".git" / "config"
    return {
        "checkout": checkout,
        "outside": {path.name: path.read_bytes() for path in outside.iterdir()},
        "config": (config.read_bytes(), config.stat().st_mtime_ns),
        "hooks": sorted(path.name for path in (repo / ".git" / "hooks").iterdir()),
        "HEAD": (repo / ".git" / "HEAD").read_text(),
        "branches": git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/m*"),
    }


def run_task(
    repo: Path,
    command: str,
    *,
    more: str = "",
    env=CONFINED,
    creates=(),
    writes=(),
    declared: bool = True,
):
    """Run a workstream of one shell task with ``command`` (then ``echo ran > ran.txt``).
    The task declares what it writes (``ran.txt`` and ``creates``, ``writes``): it gets a
    worktree of its own, whose change lands. Not ``declared``, it declares no writes and
    runs in the worktree shared by such commands."""
    created, written = json.dumps(["ran.txt", *creates]), json.dumps(list(writes))
    files = f"files = {{ create = {created}, write = {written} }}\n" if declared else ""
    (repo / "ws.toml").write_text(
        'id = "w"\n[defaults]\nmax_attempts = 1\n[[tasks]]\nid = "t"\nshell = true\n'
        f"command = '''{command}\necho ran > ran.txt'''\n{files}{more}"
    )
    return run_orchestra("run", "ws.toml", "--json", cwd=repo, env=env)


def attempt_log(repo: Path, run_id: str) -> str:
    return (repo / ".orchestra" / "runs" / run_id / "t.1.log").read_text()


ESCAPES = {
    # name: (what the task runs, in its worktree; what the refusal says in its log)
    "write through ../ into the checkout": (
        "echo stolen >> ../../../../README.md",
        "Read-only file system",
    ),
    "write through a symlink into the checkout": (
        "ln -s {repo}/src/app.py link && echo 'VALUE = 666' > link; rm -f link",
        "Read-only file system",
    ),
    "delete a file of the checkout": ("rm -f {repo}/README.md", "Read-only file system"),
    "write an absolute path outside the repository": (
        "echo planted > {outside}/planted.txt; echo stolen >> {outside}/notes.txt",
        "Read-only file system",
    ),
    "install a hook in the repository": (
        "printf '#!/bin/sh\\necho pwned\\n' > {repo}/.git/hooks/pre-commit;"
        ' hooks="$(git rev-parse --git-common-dir)/hooks";'
        ' printf "#!/bin/sh\\necho pwned\\n" > "$hooks/post-checkout"',
        "Read-only file system",
    ),
    "move the user's branch with git update-ref": (
        'evil=$(git commit-tree "HEAD^{{tree}}" -m evil) && git update-ref refs/heads/main "$evil"',
        "Read-only file system",
    ),
    "set core.fsmonitor in the repository's config": (
        "git config core.fsmonitor 'touch {outside}/pwned'",
        "Read-only file system",
    ),
    "write orchestra's database": (
        "python3 -c \"import sqlite3; db = sqlite3.connect('{repo}/.orchestra/orchestra.db');"
        " db.execute('CREATE TABLE pwned (x)'); db.commit()\"",
        "readonly database",
    ),
}


@pytest.mark.parametrize("declared", [True, False], ids=["own worktree", "shared worktree"])
@pytest.mark.parametrize("escape", list(ESCAPES))
def test_a_task_cannot_get_out_of_its_worktree(project, escape, declared):
    command, refusal = ESCAPES[escape]
    before = user_state(project)

    result = run_task(
        project,
        command.format(repo=project, outside=project.parent / "outside") + " || true",
        declared=declared,
    )

    run_id = json.loads(result.stdout)["run"]
    if declared:
        # it ran, in its worktree, and what it left there landed on the run branch
        assert result.returncode == 0, result.stdout + result.stderr
        assert git(project, "show", f"orchestra/{run_id}:ran.txt") == "ran\n"
    else:
        # it ran in the shared worktree, which it could write: what it left there was
        # found, and fails it (it declares no writes)
        (attempt,) = rows(project, "SELECT * FROM attempts")
        assert attempt["error_class"] == "scope_violation", result.stdout + result.stderr
        assert "but it changed the tree: ran.txt" in attempt["message"]
    assert refusal in attempt_log(project, run_id)
    assert user_state(project) == before
    assert not (project.parent / "outside" / "pwned").exists()
    tables = {row[0] for row in rows(project, "SELECT name FROM sqlite_master")}
    assert "pwned" not in tables
    assert rows(project, "PRAGMA integrity_check")[0][0] == "ok"


def test_a_task_writes_its_worktree_and_its_temporary_directory_and_git_add_works(project):
    before = user_state(project)

    result = run_task(
        project,
        'echo "TMPDIR is $TMPDIR" && echo scratch > "$TMPDIR/scratch.txt" && test -s "$TMPDIR/scratch.txt"'
        ' && echo new > new.txt && echo "VALUE = 2" > src/app.py && git add new.txt'
        " && git status --short",
        more='checks = ["test -s new.txt", "sh -c \'test -s \\"$TMPDIR/scratch.txt\\"\'"]\n',
        creates=["new.txt"],
        writes=["src/app.py"],
    )

    assert result.returncode == 0, result.stdout + result.stderr
    run_id = json.loads(result.stdout)["run"]
    assert git(project, "show", f"orchestra/{run_id}:new.txt") == "new\n"
    assert git(project, "show", f"orchestra/{run_id}:src/app.py") == "VALUE = 2\n"
    log = attempt_log(project, run_id)
    # git add worked, on the attempt's private index; nothing was refused
    assert "A  new.txt\n M src/app.py\n" in log and "Read-only" not in log
    assert user_state(project) == before
    # the check saw what the tool left in TMPDIR; the directory went with the attempt
    (said,) = [line for line in log.splitlines() if line.startswith("TMPDIR is /")]
    temporary = Path(said.removeprefix("TMPDIR is "))
    assert temporary.name == "tmp" and temporary.parent.name.startswith(f"orchestra-{run_id}-")
    assert not temporary.parent.exists()


def test_git_add_in_the_sandbox_is_seen_by_the_checks_and_orchestra_commits_the_file(project):
    result = run_task(
        project,
        "echo staged > staged.txt && git add staged.txt",
        more="checks = [\"sh -c 'git diff --cached --name-only | grep -x staged.txt'\"]\n",
        creates=["staged.txt"],
    )

    assert result.returncode == 0, result.stdout + result.stderr
    run_id = json.loads(result.stdout)["run"]
    assert git(project, "show", f"orchestra/{run_id}:staged.txt") == "staged\n"
    assert git(project, "status", "--porcelain") == "?? ws.toml\n"
    assert "error" not in git(project, "fsck", "--no-progress")


def test_workspace_setup_and_checks_run_in_the_sandbox_too(project):
    outside = project.parent / "outside"
    (project / "orchestra.toml").write_text(
        f"[workspace]\nsetup = [\"sh -c 'echo set-up > {outside}/setup.txt || true'\"]\n"
    )

    result = run_task(
        project,
        "true",
        more=f"checks = [\"sh -c 'echo checked > {outside}/check.txt || true'\"]\n",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert not (outside / "setup.txt").exists()
    assert not (outside / "check.txt").exists()
    log = attempt_log(project, json.loads(result.stdout)["run"])
    assert log.count("Read-only file system") == 2


def test_in_place_the_project_is_writable_but_not_its_git_nor_orchestras_directory(project):
    before_config = (project / ".git" / "config").read_bytes()
    (project / "orchestra.toml").write_text('[workspace]\nname = "inplace"\n')

    result = run_task(
        project,
        "echo made > made.txt; git config core.fsmonitor evil || true;"
        " echo junk >> .orchestra/orchestra.db || true; touch .orchestra/planted || true;"
        " echo hook > .git/hooks/pre-commit || true",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "made.txt").read_text() == "made\n"
    assert (project / "ran.txt").read_text() == "ran\n"
    assert (project / ".git" / "config").read_bytes() == before_config
    assert not (project / ".orchestra" / "planted").exists()
    assert not (project / ".git" / "hooks" / "pre-commit").exists()
    assert rows(project, "PRAGMA integrity_check")[0][0] == "ok"


def test_a_program_that_is_not_there_is_tool_missing_as_without_the_sandbox(project):
    (project / "ws.toml").write_text(
        'id = "w"\n[[tasks]]\nid = "t"\ncommand = ["no-such-program-here"]\n'
    )

    result = run_orchestra("run", "ws.toml", "--json", cwd=project, env=CONFINED)

    assert result.returncode == 1
    (attempt,) = rows(project, "SELECT * FROM attempts")
    assert attempt["error_class"] == "tool_missing"
    assert "cannot run 'no-such-program-here': No such file or directory" in attempt["message"]


def test_with_sandbox_none_a_run_goes_unconfined_and_says_so_at_its_start(project):
    (project / "orchestra.toml").write_text('sandbox = "none"\n')

    result = run_task(project, "echo outside > ../../../../../outside/unconfined.txt", env={})

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.parent / "outside" / "unconfined.txt").read_text() == "outside\n"
    config = project / "orchestra.toml"
    assert result.stderr.splitlines() == [
        f'orchestra: attempts are not sandboxed: sandbox = "none" in {config}'
    ]


def test_a_confined_run_prints_no_notice_and_tools_and_plan_say_it_is_sandboxed(project):
    result = run_task(project, "true")
    assert result.returncode == 0 and result.stderr == "", result.stderr

    tools = run_orchestra("tools", cwd=project, env=CONFINED)
    assert tools.stdout.splitlines()[-1] == f"attempts run in a bubblewrap sandbox ({BWRAP})"
    plan = run_orchestra("plan", "ws.toml", cwd=project, env=CONFINED)
    assert f"  sandbox: attempts run in a bubblewrap sandbox ({BWRAP})" in plan.stdout.splitlines()
    document = json.loads(
        run_orchestra("plan", "ws.toml", "--format", "json", cwd=project, env=CONFINED).stdout
    )
    assert document["sandbox"]["confined"] is True
    assert document["settings"]["sandbox"] == {
        "value": "bwrap",
        "source": "environment (ORCHESTRA_SANDBOX)",
    }


@pytest.fixture
def broken_bwrap(tmp_path):
    """A PATH whose first bwrap cannot make namespaces, as on a machine without them."""
    directory = tmp_path / "bin"
    directory.mkdir()
    fake = directory / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    return {"PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"}


def test_a_required_sandbox_that_cannot_run_stops_the_run_before_it_starts(project, broken_bwrap):
    (project / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "t"\ncommand = ["true"]\n')

    result = run_orchestra("run", "ws.toml", cwd=project, env={**CONFINED, **broken_bwrap})

    assert result.returncode == 2
    fake = broken_bwrap["PATH"].split(os.pathsep)[0] + "/bwrap"
    assert result.stderr.splitlines() == [
        'error: sandbox = "bwrap" in environment (ORCHESTRA_SANDBOX), but bwrap'
        f" ({fake}) cannot make its sandbox here: bwrap: No permissions to create new namespace"
    ]
    assert "Traceback" not in result.stderr
    assert not (project / ".orchestra" / "orchestra.db").exists() or not rows(
        project, "SELECT id FROM runs"
    )


def test_auto_without_a_usable_bwrap_runs_unconfined_and_every_command_says_why(
    project, broken_bwrap
):
    (project / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "t"\ncommand = ["true"]\n')
    why = "cannot make its sandbox here: bwrap: No permissions to create new namespace"

    result = run_orchestra("run", "ws.toml", "--json", cwd=project, env=broken_bwrap)
    tools = run_orchestra("tools", cwd=project, env=broken_bwrap)
    plan = run_orchestra("plan", "ws.toml", cwd=project, env=broken_bwrap)

    assert result.returncode == 0, result.stderr
    (notice,) = result.stderr.splitlines()
    assert notice.startswith("orchestra: attempts are not sandboxed: bwrap (") and why in notice
    assert "attempts are not sandboxed" in tools.stdout.splitlines()[-1] and why in tools.stdout
    assert any(
        line.startswith("  sandbox: attempts are not sandboxed")
        for line in plan.stdout.splitlines()
    )


def test_a_bad_sandbox_value_is_a_one_line_error(project):
    (project / "orchestra.toml").write_text('sandbox = "docker"\n')
    (project / "ws.toml").write_text('id = "w"\n[[tasks]]\nid = "t"\ncommand = ["true"]\n')

    result = run_orchestra("run", "ws.toml", cwd=project)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {project / 'orchestra.toml'}: field 'sandbox': must be one of auto, bwrap,"
        " none, not 'docker'"
    ]


def test_no_process_of_the_sandbox_but_the_command_holds_the_keys_it_was_given(project):
    # The sandbox may read the environment of bwrap's own process (bwrap dropped its
    # capabilities, so as root nothing stops it): a key a tool keeps from the commands it
    # runs (claude's, codex's) must not be there. The command itself holds what it was
    # given; no other process may, and none may show it on its command line.
    (project / "orchestra.toml").write_text('[tools.shell]\npass_env = ["PROBE_API_KEY"]\n')
    probe = (
        "import glob, os\n"
        "for place in glob.glob('/proc/[0-9]*'):\n"
        "    pid = int(place.rsplit('/', 1)[1])\n"
        "    for part in ('environ', 'cmdline'):\n"
        "        try:\n"
        "            data = open(f'{place}/{part}', 'rb').read()\n"
        "        except OSError:\n"
        "            continue\n"
        "        if b'sk-sandbox-probe-4711' in data and pid != os.getpid():\n"
        "            print('found in', pid, part, data.split(b'\\0')[0])\n"
        "print('probe done')\n"
    )
    (project / "probe.py").write_text(probe)
    git(project, "add", "probe.py", "orchestra.toml")
    git(project, "commit", "-qm", "probe")
    (project / "ws.toml").write_text(
        'id = "w"\n[defaults]\nmax_attempts = 1\n[[tasks]]\nid = "t"\n'
        'command = ["python3", "probe.py"]\n'
    )

    result = run_orchestra(
        "run",
        "ws.toml",
        "--json",
        cwd=project,
        env={**CONFINED, "PROBE_API_KEY": "sk-sandbox-probe-4711"},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    log = attempt_log(project, json.loads(result.stdout)["run"])
    assert "probe done" in log
    assert "found in" not in log, log
