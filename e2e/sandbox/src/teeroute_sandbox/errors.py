"""Errors the sandbox raises; each names what failed and what to do about it.

TeerouteError (teeroute.errors)
└── SandboxError
    ├── NamespacesNotPermitted   cannot create network/mount namespaces here
    ├── BuildFailed              a control-plane binary did not build
    ├── StartupFailed            a component did not become ready (log path given)
    ├── NotRunning               the command needs a sandbox that is up
    └── UnknownComponent         no component of that name (stop/start/restart)
"""

from teeroute.errors import TeerouteError


class SandboxError(TeerouteError):
    exit_code = 1


class NamespacesNotPermitted(SandboxError):
    exit_code = 3


class BuildFailed(SandboxError):
    exit_code = 4


class StartupFailed(SandboxError):
    exit_code = 5


class NotRunning(SandboxError):
    exit_code = 6


class UnknownComponent(SandboxError):
    exit_code = 7
