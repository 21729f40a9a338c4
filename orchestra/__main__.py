"""``python -m orchestra``: the ``orchestra`` command, for where the console script is
not on PATH (a plugin starting a command of its own interpreter's orchestra)."""

from orchestra.cli import console

if __name__ == "__main__":
    console()
