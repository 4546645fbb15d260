"""Each Dockerfile says what the builder's definition says: the definition is the truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from teeroute_images.definitions import IMAGES, USER, ImageSpec
from tests.images.dockerfile import env_pairs, exec_form, stages

ROOT = Path(__file__).resolve().parents[2]


def dockerfile(name: str) -> str:
    return (ROOT / "enclave-images" / name / "Dockerfile").read_text()


@pytest.mark.parametrize("spec", IMAGES.values(), ids=list(IMAGES))
def test_dockerfile_matches_the_builders_image(spec: ImageSpec) -> None:
    build, final = stages(dockerfile(spec.name))
    assert final.base == "scratch"
    assert final.all("COPY") == ["--from=build /rootfs/ /"]
    assert final.one("USER") == USER
    assert env_pairs(final.all("ENV")) == list(spec.environment)
    assert final.one("WORKDIR") == "/"
    assert exec_form(final.one("ENTRYPOINT")) == list(spec.entrypoint)
    assert exec_form(final.one("CMD")) == list(spec.cmd)
    assert {i for i, _ in final.instructions} <= {
        "COPY",
        "USER",
        "ENV",
        "WORKDIR",
        "ENTRYPOINT",
        "CMD",
    }
    # The files come from this builder, for this image.
    assert build.all("RUN")[-1].endswith(f"teeroute images rootfs {spec.name} /rootfs")


def test_every_dockerfile_is_an_image_of_the_builder() -> None:
    folders = {p.parent.name for p in (ROOT / "enclave-images").glob("*/Dockerfile")}
    assert folders == set(IMAGES)


def test_a_drifted_dockerfile_is_caught() -> None:
    """The check is not vacuous: a Dockerfile with another entrypoint fails it."""
    spec = IMAGES["agent"]
    drifted = dockerfile("agent").replace("teeroute_enclave", "teeroute_engine_sim")
    _, final = stages(drifted)
    assert exec_form(final.one("ENTRYPOINT")) != list(spec.entrypoint)
