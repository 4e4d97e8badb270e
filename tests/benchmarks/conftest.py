"""The benchmark drivers are scripts (``python benchmarks/<name>.py``), not a package: their
folder goes on ``sys.path`` here, as it is when a script runs, so the tests import them (and
they import each other) by their names."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)
