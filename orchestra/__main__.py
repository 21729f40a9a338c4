"""``python -m orchestra``: the ``orchestra`` command, for where the console script is
not on PATH (a plugin starting a command of its own interpreter's orchestra)."""

from orchestra.cli import main

# main, not console: a process that runs this module (a profiler: python -m cProfile -m
# orchestra) may have more to do after it, so it ends the ordinary way
if __name__ == "__main__":
    main()
