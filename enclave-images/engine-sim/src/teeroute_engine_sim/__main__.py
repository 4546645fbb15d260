"""`python -m teeroute_engine_sim`: the engine container's command (vLLM-style flags)."""

from __future__ import annotations

import sys

from teeroute_engine_sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
