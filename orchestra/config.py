"""Project configuration: orchestra.toml or [tool.orchestra], and how settings resolve.

The configuration file is found by walking up from the working directory; the directory
holding it is the project root. A setting's value comes from, in order of precedence:
command-line flag > ORCHESTRA_* environment variable > the workstream's [defaults] >
the configuration file > the built-in default. ``Settings`` remembers which one it was,
so ``orchestra plan`` can say why.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from orchestra import classes
from orchestra.durations import parse_duration
from orchestra.errors import ConfigError, ConfigInvalid, SpecError, did_you_mean
from orchestra.models import Budget, Defaults, ToolProfile, duration, size
from orchestra.sizes import parse_size

if TYPE_CHECKING:
    from orchestra.plugin.protocols import PluginSetting

CONFIG_FILE = "orchestra.toml"
PYPROJECT = "pyproject.toml"


#: build output and caches never part of an attempt's change (gitignore patterns), unless
#: ``[workspace] ignore`` gives another list: what tests, type checkers, linters and
#: package builds leave behind, and nobody means to commit
DEFAULT_IGNORE = (
    "__pycache__/",
    "*.py[cod]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".hypothesis/",
    ".tox/",
    ".nox/",
    ".coverage",
    ".coverage.*",
    "htmlcov/",
    "*.egg-info/",
    ".ipynb_checkpoints/",
    "**/node_modules/.cache/",
    ".eslintcache",
)


@classes.frozen
class WorkspaceConfig:
    """The ``[workspace]`` table: which workspace, how to prepare each new one, and what
    is never part of an attempt's change."""

    name: str | None = None
    copy: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    #: gitignore patterns left out of every attempt's change, besides .gitignore's
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    #: whether runs start from the uncommitted changes too (``--include-uncommitted``)
    include_uncommitted: bool | None = None


@classes.frozen
class Config:
    """The contents of orchestra.toml (or [tool.orchestra]); ``None`` means not set there."""

    db: str | None = None
    max_parallel: int | None = None
    routing: str | None = None
    scheduler: str | None = None
    #: where attempts run: ``local`` or an executor plugin's name
    executor: str | None = None
    sinks: tuple[str, ...] | None = None
    max_attempts: int | None = None
    timeout: float | None = duration()
    idle_timeout: float | None = duration()
    #: how much output an attempt's log keeps
    log_limit: int | None = size()
    #: whether attempts run in a sandbox: auto (bubblewrap where it works), bwrap, none
    sandbox: str | None = None
    #: more directories that sandboxed attempts may write (caches: ~/.cache/uv)
    sandbox_writable: tuple[str, ...] | None = None
    disable_plugins: tuple[str, ...] = ()
    #: the budget of every run in the project, unless [defaults] or a flag says otherwise
    budget: Budget | None = None
    workspace: WorkspaceConfig = WorkspaceConfig()
    #: ``[sink.NAME]`` tables: each sink's options (the jsonl file, the webhook's url …)
    sink: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, hash=False)
    tools: Mapping[str, ToolProfile] = attrs.field(factory=dict, hash=False)
    #: the keys orchestra does not know itself, as the file has them: plugins' settings
    #: (``orchestra_register_settings``), checked once the plugins are loaded
    #: (``plugin_settings_problems``); never a key of the file
    plugin_settings: Mapping[str, Any] = attrs.field(
        factory=dict, hash=False, metadata={"internal": True}
    )

    @property
    def workspace_name(self) -> str | None:
        return self.workspace.name

    @property
    def include_uncommitted(self) -> bool | None:
        return self.workspace.include_uncommitted

    @property
    def budget_cost(self) -> float | None:
        return self.budget.cost if self.budget else None

    @property
    def budget_tokens(self) -> int | None:
        return self.budget.tokens if self.budget else None


@classes.frozen
class Project:
    """Where orchestra works: the project root and its configuration, if any."""

    root: Path
    config: Config = Config()
    config_file: Path | None = None

    @property
    def config_label(self) -> str:
        """How messages name the configuration: its path, or 'no configuration file'."""
        if self.config_file is None:
            return "no configuration file"
        if self.config_file.name == PYPROJECT:
            return f"{self.config_file} [tool.orchestra]"
        return str(self.config_file)

    def profile(self, tool: str) -> ToolProfile:
        """Return the tool's profile from configuration, or an empty one."""
        return self.config.tools.get(tool) or ToolProfile(name=tool)


def find_project(start: Path | None = None) -> Project:
    """Return the project around ``start`` (the working directory by default).

    Walks up to the first directory holding orchestra.toml or a pyproject.toml with a
    [tool.orchestra] table. With neither, the project root is ``start`` itself.
    """
    start = (start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_FILE
        if candidate.is_file():
            return Project(directory, load_config(candidate), candidate)
        pyproject = directory / PYPROJECT
        if pyproject.is_file():
            table = _tool_orchestra_table(pyproject)
            if table is not None:
                return Project(directory, config_from_dict(table, str(pyproject)), pyproject)
    return Project(start)


def load_config(path: Path) -> Config:
    """Return the configuration in ``path`` (orchestra.toml), or raise ConfigInvalid."""
    from orchestra.spec import read_toml

    try:
        document = read_toml(path)
    except SpecError as error:
        raise ConfigError(error.message, file=error.file) from None
    return config_from_dict(document, str(path))


def _tool_orchestra_table(pyproject: Path) -> dict[str, Any] | None:
    from orchestra.spec import read_toml

    try:
        document = read_toml(pyproject)
    except SpecError as error:
        raise ConfigError(error.message, file=error.file) from None
    tools = document.get("tool", {})
    table = tools.get("orchestra") if isinstance(tools, dict) else None
    if table is not None and not isinstance(table, dict):
        raise ConfigError("[tool.orchestra] must be a table", file=str(pyproject))
    return table


def config_from_dict(document: Mapping[str, Any], file: str) -> Config:
    """Return the Config a parsed document describes; every problem is reported at once."""
    from orchestra.spec import budget_problems

    own = {key: value for key, value in document.items() if key in CONFIG_KEYS}
    config = _plain_config(own)
    if config is None:
        from cattrs.errors import ClassValidationError, IterableValidationError

        from orchestra.spec import converter, structuring_problems

        try:
            config = converter().structure(own, Config)
        except (ClassValidationError, IterableValidationError) as error:
            raise ConfigInvalid(file, structuring_problems(error, own, file)) from None
    others = {key: value for key, value in document.items() if key not in CONFIG_KEYS}
    if others:
        config = attrs.evolve(config, plugin_settings=others)
    problems = []
    if config.max_parallel is not None and config.max_parallel < 1:
        problems.append(ConfigError("must be at least 1", file=file, field="max_parallel"))
    if config.max_attempts is not None and config.max_attempts < 1:
        problems.append(ConfigError("must be at least 1", file=file, field="max_attempts"))
    for field_name in ("timeout", "idle_timeout"):
        seconds = getattr(config, field_name)
        if seconds is not None and seconds <= 0:
            problems.append(ConfigError("must be longer than zero", file=file, field=field_name))
    problems += [
        ConfigError(message, file=file, field=f"budget.{name}")
        for name, message in budget_problems(config.budget)
    ]
    for index, line in enumerate(config.workspace.setup):
        try:
            shlex.split(line)  # run without a shell, split as one would
        except ValueError as error:
            field = f"workspace.setup[{index}]"
            problems.append(ConfigError(f"cannot split {line!r}: {error}", file=file, field=field))
    if config.sandbox is not None and config.sandbox not in SANDBOX_MODES:
        message = f"must be one of {', '.join(SANDBOX_MODES)}, not {config.sandbox!r}"
        problems.append(ConfigError(message, file=file, field="sandbox"))
    for index, pattern in enumerate(config.workspace.ignore):
        if not pattern.strip() or "\n" in pattern:
            field = f"workspace.ignore[{index}]"
            message = f"{pattern!r} is not a pattern: write one like '__pycache__/' or '*.log'"
            problems.append(ConfigError(message, file=file, field=field))
    for name, profile in config.tools.items():
        if profile.max_concurrency is not None and profile.max_concurrency < 1:
            field = f"tools.{name}.max_concurrency"
            problems.append(ConfigError("must be at least 1", file=file, field=field))
    if problems:
        raise ConfigInvalid(file, problems)
    return config


# -- settings and their precedence -------------------------------------------------------


def _parse_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _parse_seconds(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def _parse_cost(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be more than zero")
    return value


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false (1, yes, on / 0, no, off)")


def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


#: the values of the ``sandbox`` setting (engine/sandbox.py)
SANDBOX_MODES = ("auto", "bwrap", "none")


def _parse_sandbox(text: str) -> str:
    if text not in SANDBOX_MODES:
        raise ValueError(f"must be one of {', '.join(SANDBOX_MODES)}")
    return text


@classes.frozen
class Setting:
    """A setting that can come from a flag, the environment, [defaults] or the config file."""

    name: str
    default: Any
    parse: Callable[[str], Any]
    description: str
    in_defaults: bool = False  # whether a workstream's [defaults] can set it
    #: the Config attribute holding it, when not its own name
    config_attribute: str | None = None
    #: the command-line flag that sets it, when not --<name>
    flag: str | None = None

    @property
    def variable(self) -> str:
        return f"ORCHESTRA_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "db", ".orchestra/orchestra.db", str, "the SQLite database, relative to the project root"
    ),
    Setting("max_parallel", 4, _parse_int, "how many tasks run at the same time"),
    Setting("routing", "auto", str, "the routing strategy for tasks that pin no tool", True),
    Setting("scheduler", "eager", str, "the scheduling strategy that orders ready tasks"),
    Setting("executor", "local", str, "where attempts run: local, or a plugin's executor"),
    Setting("sinks", ("console",), _parse_names, "where a run's events go", flag="--sink"),
    Setting("max_attempts", 3, _parse_int, "attempts per task before it fails", True),
    Setting("timeout", 1800.0, _parse_seconds, "wall-clock limit of one attempt", True),
    Setting("idle_timeout", 600.0, _parse_seconds, "limit on an attempt printing nothing", True),
    # 10 MB: attempt_log.py's DEFAULT_LOG_LIMIT (not imported: config loads for every command)
    Setting("log_limit", 10_000_000, parse_size, "how much output an attempt's log keeps", True),
    # not in [defaults]: a workstream file, which may come from elsewhere, cannot widen it
    Setting(
        "sandbox", "auto", _parse_sandbox, "whether attempts run in a sandbox: auto, bwrap, none"
    ),
    Setting("sandbox_writable", (), _parse_names, "more directories sandboxed attempts may write"),
    Setting("budget_cost", None, _parse_cost, "the most a run may cost (what tools report)", True),
    Setting("budget_tokens", None, _parse_int, "the most tokens a run may use", True),
    Setting(
        "workspace",
        None,
        str,
        "where attempts run: worktree (in a git repository) or inplace",
        True,
        "workspace_name",
    ),
    Setting(
        "include_uncommitted",
        False,
        _parse_bool,
        "whether a run in a worktree starts from your uncommitted changes too",
    ),
)
#: the keys of the configuration file that are orchestra's own; the others are plugins'
#: the keys of a configuration that ``_plain_config`` takes, each with its one type
_PLAIN_CONFIG_KEYS = {
    "db": str,
    "routing": str,
    "scheduler": str,
    "executor": str,
    "sandbox": str,
    "max_parallel": int,
    "max_attempts": int,
}


def _plain_config(own: Mapping[str, Any]) -> Config | None:
    """The Config of settings that are all plain strings and integers (or none), made as
    cattrs would make it, without importing it (as spec/plain.py does for workstreams);
    None for anything else, which cattrs structures and reports on."""
    for key, value in own.items():
        kind = _PLAIN_CONFIG_KEYS.get(key)
        if kind is None or type(value) is not kind:
            return None  # bool is its own type: true is no integer
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return None
    return Config(**own)


CONFIG_KEYS = frozenset(
    field.name for field in attrs.fields(Config) if not field.metadata.get("internal")
)
#: the parameters of ``run`` and ``resume`` that are not settings, by their names and
#: their options' (tests/test_plugin_settings.py keeps this in step with the commands)
COMMAND_OPTIONS = frozenset(
    {"paths", "run_id", "help", "fail_fast", "force", "merge_into", "plain", "quiet"}
    | {"json", "as_json", "sink", "sink_names"}
    | {"format", "from", "file_format", "include_done", "tag", "id", "set_id", "title"}
    | {"set_title", "workstream_id"}  # the loaders' options, and their name in a record
)
#: what a plugin's setting cannot be called: orchestra's settings, its configuration's
#: keys, the options of run and resume, and what a run records beside its settings
RESERVED_NAMES = frozenset(
    {setting.name for setting in SETTINGS} | CONFIG_KEYS | COMMAND_OPTIONS | {"loader_options"}
)


@classes.frozen
class Resolved:
    """A setting's value and where it came from."""

    value: Any
    source: str


@classes.frozen
class Settings:
    """Every setting resolved by precedence, each with its source."""

    values: Mapping[str, Resolved]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name].value
        except KeyError:
            raise AttributeError(name) from None

    def source(self, name: str) -> str:
        """Return where the setting's value came from, for plans and `--help`-like output."""
        return self.values[name].source


def resolve_settings(
    project: Project,
    *,
    flags: Mapping[str, Any] | None = None,
    defaults: Defaults | None = None,
    environ: Mapping[str, str] | None = None,
    declared: Iterable[PluginSetting] | None = None,
) -> Settings:
    """Return the settings: flag > ORCHESTRA_* variable > [defaults] > config > built-in.

    ``flags`` maps setting names to values given on the command line (None = not given).
    ``declared`` are the settings plugins add: given, they are resolved too (flag >
    variable > config > the plugin's default), and the configuration's keys that neither
    orchestra nor a plugin knows are refused (ConfigInvalid); not given, those keys are
    left alone. Raises ConfigError naming the variable when an ORCHESTRA_* value cannot
    be read.
    """
    environ = os.environ if environ is None else environ
    flags = flags or {}
    values = {}
    for setting in SETTINGS:
        values[setting.name] = _resolve_one(setting, project, flags, defaults, environ)
    db = Path(values["db"].value)
    if not db.is_absolute():
        values["db"] = attrs.evolve(values["db"], value=str(project.root / db))
    if declared is not None:
        declared = list(declared)
        problems = plugin_settings_problems(project, declared)
        if problems:
            raise ConfigInvalid(str(project.config_file), problems)
        for plugin_setting in declared:
            values[plugin_setting.name] = _resolve_plugin_setting(
                plugin_setting, project, flags, environ
            )
    return Settings(values)


# -- the settings plugins add -------------------------------------------------------------


def plugin_settings_problems(
    project: Project, declared: Sequence[PluginSetting]
) -> list[ConfigError]:
    """Return one error per key of the configuration that is neither orchestra's nor a
    declared setting, and per declared setting whose value there has the wrong type."""
    file = str(project.config_file)
    by_name = {setting.name: setting for setting in declared}
    known = [*CONFIG_KEYS, *by_name]
    problems = []
    for key, value in project.config.plugin_settings.items():
        setting = by_name.get(key)
        if setting is None:
            hint = did_you_mean(key, known) or " (neither orchestra nor a plugin uses it)"
            problems.append(ConfigError(f"unknown key {key!r}{hint}", file=file, field=key))
            continue
        wrong = _wrong_type(setting, value)
        if wrong is not None:
            problems.append(ConfigError(wrong, file=file, field=key))
    return problems


#: how messages name the value a plugin's setting wants
_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _wrong_type(setting: PluginSetting, value: Any) -> str | None:
    """Say what is wrong with a configuration value of ``setting``, or None when its
    type is right (an integer is a number; a boolean is not an integer)."""
    from orchestra.spec import describe

    accepted = (int, float) if setting.type is float else (setting.type,)
    if isinstance(value, accepted) and not (isinstance(value, bool) and setting.type is not bool):
        return None
    return f"expected {_TYPE_WORDS[setting.type]}, got {describe(value)}"


def _parse_plugin_value(setting: PluginSetting, text: str) -> Any:
    """Read an ORCHESTRA_* variable's text as a value of ``setting``'s type."""
    if setting.type is bool:
        return _parse_bool(text)
    return setting.type(text)


def _resolve_plugin_setting(
    setting: PluginSetting,
    project: Project,
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
) -> Resolved:
    flag = flags.get(setting.name)
    if flag is not None:
        return Resolved(flag, f"command line (--{setting.name.replace('_', '-')})")
    variable = f"ORCHESTRA_{setting.name.upper()}"
    text = environ.get(variable)
    if text:
        try:
            return Resolved(_parse_plugin_value(setting, text), f"environment ({variable})")
        except ValueError as error:
            raise ConfigError(f"environment variable {variable}={text!r}: {error}") from None
    value = project.config.plugin_settings.get(setting.name)
    if value is not None:
        return Resolved(float(value) if setting.type is float else value, project.config_label)
    return Resolved(setting.default, "plugin default")


def _resolve_one(
    setting: Setting,
    project: Project,
    flags: Mapping[str, Any],
    defaults: Defaults | None,
    environ: Mapping[str, str],
) -> Resolved:
    flag = flags.get(setting.name)
    if flag is not None:
        option = setting.flag or f"--{setting.name.replace('_', '-')}"
        return Resolved(flag, f"command line ({option})")
    text = environ.get(setting.variable)
    if text:
        try:
            return Resolved(setting.parse(text), f"environment ({setting.variable})")
        except ValueError as error:
            raise ConfigError(
                f"environment variable {setting.variable}={text!r}: {error}"
            ) from None
    if setting.in_defaults and defaults is not None:
        value = getattr(defaults, setting.name)
        if value is not None:
            return Resolved(value, "workstream [defaults]")
    value = getattr(project.config, setting.config_attribute or setting.name)
    if value is not None:
        return Resolved(value, project.config_label)
    return Resolved(setting.default, "built-in default")
