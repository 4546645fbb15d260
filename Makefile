# The two commands of the README. Both install what is missing first (scripts/setup).
.PHONY: demo demo-down test setup results

demo:
	./scripts/demo

demo-down:
	./scripts/demo-down

test:
	./scripts/test

setup:
	./scripts/setup

# RESULTS.md, its plots and README's results block, from the committed result files alone
# (e2e/bench/report; no benchmark is rerun). `--check` instead fails when one is stale.
results:
	PYTHONPATH=e2e/bench python3 -m uv run --frozen python -m report
