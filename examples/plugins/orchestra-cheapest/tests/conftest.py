"""Lets the tests import orchestra_cheapest from this directory when it is not installed."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
