"""Errors of the image builder: each says which step failed and what to do about it."""

from __future__ import annotations

from teeroute.errors import TeerouteError


class ImageBuildError(TeerouteError):
    """A build step failed (a tool missing or failing, an input that does not resolve)."""


class UnknownImage(ImageBuildError):
    """A name given on the command line is not one of the images we build."""

    exit_code = 2
