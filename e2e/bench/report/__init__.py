"""`e2e/bench/RESULTS.md` and its plots, regenerated from the committed result files alone.

    make results        # = PYTHONPATH=e2e/bench python3 -m uv run --frozen python -m report
    PYTHONPATH=e2e/bench python3 -m uv run --frozen python -m report --check

Nothing here runs a benchmark: it reads `e2e/bench/results/*.json` and writes RESULTS.md and
`results/plots/*.png`. A result file that is missing renders as "not yet measured". One concept
per module:

- `sources`: which result files exist, each loaded with its date, commit and machine (pure
  but for reading the files).
- `headline`: every target with its measured number and whether it was met (pure).
- `capacity`: the capacity model for 1.4 M tokens/s, and its inputs read from the result
  files (pure).
- `tables`: generic markdown tables, and the summary of a result file of unknown shape (pure).
- `sections`: RESULTS.md's sections, one function each (pure).
- `plots`: the PNG plots (matplotlib, Agg, fixed size and dpi, no timestamps: the same files
  give the same bytes).
- `generate`: the whole document and plots in memory; write them, or check the committed ones.
"""
