"""Error types shared by every teeroute component.

    TeerouteError            base: a failure we expect and can explain to the user
    └── (component errors)   e.g. the sandbox's SandboxError

Each error carries the exit code the `teeroute` CLI returns for it, so the CLI maps errors
to exit codes in one place without knowing the components that raise them.
"""


class TeerouteError(Exception):
    """A failure with a message fit to show the user as it is (no secrets, no content)."""

    exit_code: int = 1
