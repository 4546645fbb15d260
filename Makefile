# The two commands of the README. Both install what is missing first (scripts/setup).
.PHONY: demo demo-down test setup

demo:
	./scripts/demo

demo-down:
	./scripts/demo-down

test:
	./scripts/test

setup:
	./scripts/setup
