"""What every test of this repository shares: a cache directory of the suite's own.

orchestra and its plugins keep things in the user's cache directory (the tools' versions,
codex's home for version probes). The suite must not depend on, nor leave anything in,
the home of whoever runs it, so ``XDG_CACHE_HOME`` points inside the checkout (ignored by
git), for this process and every orchestra it starts. Not under the temporary directory:
codex refuses to make its helper links there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def suite_cache_directory() -> Iterator[Path]:
    # one per pytest process: the -n 2 workers (and two people's runs in one checkout)
    # must not remove each other's cache while they use it
    cache = Path(__file__).resolve().parent / ".pytest_cache" / f"xdg-cache-{os.getpid()}"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        yield cache
    shutil.rmtree(cache, ignore_errors=True)
