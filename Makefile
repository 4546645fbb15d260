# The two commands of the README. Both install what is missing first (scripts/setup).
.PHONY: demo test setup

demo:
	./scripts/demo

test:
	./scripts/test

setup:
	./scripts/setup
