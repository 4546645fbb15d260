"""`teeroute chart generate|check` — registered into the `teeroute` CLI."""

from __future__ import annotations

from pathlib import Path

from teeroute.chart import generate
from teeroute.generated_files import Generated

register = Generated(
    "chart",
    "the Helm chart's generated files",
    "values.yaml, values.schema.json, README.md and the CRD templates",
    Path("charts/teeroute"),
    generate.files,
).register
