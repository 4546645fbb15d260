"""RESULTS.md, its plots and the README's results block, built in memory from the result files;
then written, or compared with what is committed.

Paths are relative to the repository root. Plots no longer produced (their result file gone)
are stale too: `write` removes them and `stale` names them.
"""

from __future__ import annotations

from pathlib import Path

from report import capacity_report, headline, performance, plots, readme, sections, sources

RESULTS_MD = Path("e2e/bench/RESULTS.md")
RESULTS_DIR = Path("e2e/bench/results")
PLOTS_DIR = RESULTS_DIR / "plots"
README = Path("README.md")


def build(root: Path) -> dict[Path, bytes]:
    """Every generated file's bytes, by path under `root`, from `root`'s result files."""
    found = sources.load_all(root / RESULTS_DIR)
    text = (root / README).read_text(encoding="utf-8")
    outputs = {
        RESULTS_MD: document(found).encode(),
        README: readme.splice(text, readme.block(found, headline.groups(found))).encode(),
    }
    outputs.update({PLOTS_DIR / name: data for name, data in plots.render(found).items()})
    return outputs


def document(found: dict[str, sources.Source]) -> str:
    """RESULTS.md's text."""
    groups = headline.groups(found)
    parts = (
        sections.title(groups),
        sections.files(found),
        sections.targets(groups),
        performance.gateway(found.get("gateway")),
        performance.sealed(found),
        sections.generic(found),
        capacity_report.section(found),
        sections.measurements(found),
        sections.others(found),
    )
    return "\n\n".join(part for part in parts if part) + "\n"


def extra_plots(root: Path, outputs: dict[Path, bytes]) -> list[Path]:
    folder = root / PLOTS_DIR
    present = sorted(p.relative_to(root) for p in folder.glob("*.png")) if folder.is_dir() else []
    return [p for p in present if p not in outputs]


def stale(root: Path, outputs: dict[Path, bytes]) -> list[Path]:
    """The generated files that are missing, differ, or should no longer exist."""
    differ = [
        path
        for path, data in outputs.items()
        if not (root / path).is_file() or (root / path).read_bytes() != data
    ]
    return sorted(differ + extra_plots(root, outputs))


def write(root: Path, outputs: dict[Path, bytes]) -> list[Path]:
    """Write what changed; remove plots no result file gives any more. Returns what changed."""
    changed = stale(root, outputs)
    for path in extra_plots(root, outputs):
        (root / path).unlink()
    (root / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    for path in changed:
        if path in outputs:
            (root / path).write_bytes(outputs[path])
    return changed
