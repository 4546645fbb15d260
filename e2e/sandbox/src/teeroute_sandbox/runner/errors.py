"""Why the runner cannot start a container, as the kubelet reports it in the pod's status."""

from __future__ import annotations


class ConfigError(Exception):
    """The container cannot be configured (names the missing reference)."""

    reason = "CreateContainerConfigError"
    """The waiting reason the pod's status shows, as the kubelet names it."""
