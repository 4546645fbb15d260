"""`teeroute crds generate|check` — registered into the `teeroute` CLI."""

from __future__ import annotations

from pathlib import Path

from teeroute.api import crdgen
from teeroute.generated_files import Generated

register = Generated(
    "crds",
    "the CustomResourceDefinitions of the teeroute API",
    "the CRDs generated from the API models",
    Path("crds"),
    crdgen.rendered,
).register
