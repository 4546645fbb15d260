"""`python -m teeroute_miner ARGS`: exec vLLM with the mapped command (see argv.py).

`--dry-run` as the first argument prints the command instead (without the environment, which
may hold a token), for checking a pool's arguments without a GPU.
"""

from __future__ import annotations

import os
import shlex
import sys

from teeroute_miner.argv import ArgumentError, vllm_command


def main(args: list[str]) -> int:
    dry = bool(args) and args[0] == "--dry-run"
    try:
        command = vllm_command(args[1:] if dry else args, os.environ, sys.executable)
    except ArgumentError as exc:
        print(f"teeroute_miner: cannot start vLLM: {exc}", file=sys.stderr)
        return 2
    if dry:
        print(shlex.join(command.argv))
        return 0
    print(f"teeroute_miner: {shlex.join(command.argv[1:])}", file=sys.stderr, flush=True)
    os.execve(command.argv[0], command.argv, command.env)  # noqa: S606 - argv, no shell
    return 0  # not reached: execve replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
