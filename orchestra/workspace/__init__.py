"""Where tasks run: the git operations behind the workspace plugins."""
