"""The example routing plugin in examples/plugins/orchestra-cheapest: pip installs it, a real
`orchestra run` routes with it, and docs/plugins.md shows its code as it is."""

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra.testing import run_orchestra, scripted_tools_env, tool_calls, write_tool_script

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "examples" / "plugins" / "orchestra-cheapest"

CONFIG = """\
[tools.alpha]
cost_per_task = 0.40

[tools.beta]
cost_per_task = 0.25
"""

WORKSTREAM = """\
id = "cheap"

[defaults]
routing = "cheapest"

[[tasks]]
id = "models"
prompt = "Create src/models.py with a User class"

[[tasks]]
id = "format"
depends_on = ["models"]
command = ["true"]
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A directory where pip installed the example plugin, to put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    offline = ["--no-deps", "--no-index", "--no-build-isolation", "--no-cache-dir"]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", *offline, "--target", target, PACKAGE],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str], Path, Path]:
    """A project with two scripted tools of different costs and a workstream routed by
    cost; returns it, the environment naming the tools, and their scripts."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "orchestra.toml").write_text(CONFIG)
    (project / "cheap.toml").write_text(WORKSTREAM)
    models = {"edit": {"path": "src/models.py", "content": "class User:\n    pass\n"}}
    alpha = write_tool_script(tmp_path / "alpha.toml", [{"action": "succeed", **models}])
    beta = write_tool_script(tmp_path / "beta.toml", [{"action": "succeed", **models}])
    return project, scripted_tools_env(alpha=alpha, beta=beta), alpha, beta


def test_pip_installs_the_plugin_with_its_entry_point(site):
    assert (site / "orchestra_cheapest.py").read_text() == (
        PACKAGE / "orchestra_cheapest.py"
    ).read_text()
    [dist_info] = site.glob("orchestra_cheapest-0.1.0.dist-info")
    assert (
        "[orchestra]\ncheapest = orchestra_cheapest\n"
        in (dist_info / "entry_points.txt").read_text()
    )
    listing = run_orchestra("plugins", "--json", extra_path=[site], cwd=site)
    [cheapest] = [row for row in json.loads(listing.stdout) if row["name"] == "cheapest"]
    assert (cheapest["distribution"], cheapest["version"], cheapest["status"]) == (
        "orchestra-cheapest",
        "0.1.0",
        "ok",
    )
    assert cheapest["hooks"] == ["orchestra_register_routers"]


def test_the_installed_plugin_routes_a_run_to_the_cheaper_tool(site, project):
    project, env, alpha, beta = project
    plan = run_orchestra("plan", "cheap.toml", extra_path=[site], env=env, cwd=project)
    assert plan.returncode == 0, plan.stderr
    assert re.search(r"^  models +beta +cheapest: beta at 0\.25 per task$", plan.stdout, re.M)

    result = run_orchestra("run", "cheap.toml", "--json", extra_path=[site], env=env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "succeeded"
    with sqlite3.connect(project / ".orchestra" / "orchestra.db") as db:
        attempts = db.execute("SELECT task_id, tool, outcome FROM attempts ORDER BY id").fetchall()
    assert attempts == [("models", "beta", "succeeded"), ("format", "shell", "succeeded")]
    assert (project / "src" / "models.py").read_text() == "class User:\n    pass\n"
    assert [call["task"] for call in tool_calls(beta)] == ["models"]
    assert tool_calls(alpha) == []


def test_without_the_plugin_the_strategy_name_is_an_error(project):
    project, env, _, _ = project
    result = run_orchestra("validate", "cheap.toml", env=env, cwd=project)
    assert result.returncode == 2
    assert (
        "error: cheap.toml: field 'defaults.routing': unknown routing strategy 'cheapest'"
        in result.stderr
    )
    assert not (project / ".orchestra").exists()


def test_docs_plugins_md_shows_the_package_as_it_is():
    """Each code block that docs/plugins.md introduces with "`orchestra-cheapest/PATH`:"
    is that file of the package, byte for byte."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"^`orchestra-cheapest/([^`]+)`:\n\n```\w*\n(.*?)^```$", text, re.M | re.S)
    shown = {path: code for path, code in blocks}
    assert sorted(shown) == ["orchestra_cheapest.py", "pyproject.toml", "tests/test_cheapest.py"]
    for path, code in shown.items():
        assert code == (PACKAGE / path).read_text(), f"docs/plugins.md differs from {path}"
