"""Which images a command line asks for (pure)."""

from __future__ import annotations

from teeroute_images.definitions import DEFAULT_IMAGES, IMAGES, ImageSpec
from teeroute_images.errors import UnknownImage


def chosen(names: list[str] | None, *, every: bool = False) -> list[ImageSpec]:
    if every:
        return list(IMAGES.values())
    if not names:
        return [IMAGES[name] for name in DEFAULT_IMAGES]
    unknown = [name for name in names if name not in IMAGES]
    if unknown:
        raise UnknownImage(f"no image named {', '.join(unknown)} (known: {', '.join(IMAGES)})")
    return [IMAGES[name] for name in dict.fromkeys(names)]
