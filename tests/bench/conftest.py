"""The benchmark helpers live beside their scripts (`e2e/bench/gatewaybench/`), not in an
installed package: put that folder on the import path, as running the script does."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "e2e" / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
