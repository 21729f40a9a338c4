"""The built-in commands, by name: loaded on use by the ``orchestra`` group, and names no
plugin's command may take."""

#: command name -> "module:function" of the built-in commands
BUILTIN_COMMANDS = {
    "cancel": "orchestra.cli.run:cancel",
    "convert": "orchestra.cli.convert:convert",
    "diff": "orchestra.cli.workspace:diff",
    "gc": "orchestra.cli.workspace:gc",
    "init": "orchestra.cli.init:init",
    "logs": "orchestra.cli.runs:logs",
    "plan": "orchestra.cli.plan:plan",
    "plugins": "orchestra.cli.inspect:plugins",
    "report": "orchestra.cli.report:report",
    "resume": "orchestra.cli.run:resume",
    "run": "orchestra.cli.run:run",
    "runs": "orchestra.cli.runs:runs",
    "show": "orchestra.cli.runs:show",
    "status": "orchestra.cli.runs:status",
    "tools": "orchestra.cli.inspect:tools",
    "validate": "orchestra.cli.validate:validate",
}
