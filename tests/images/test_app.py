"""The app layers' inputs: our packages apart from the pinned third-party wheels."""

from __future__ import annotations

from teeroute_images.app import split_export

EXPORTED = """./enclave-images/agent
    # via teeroute-workspace
annotated-types==0.7.0 \\
    --hash=sha256:1f02e8b43a8fbbc3f3e0d4f0f4bfc8131bcb4eebe8849b8e5c773f3a1c582a53
    # via pydantic
./sdk
    # via teeroute-enclave
"""


def test_workspace_folders_are_split_from_pinned_requirements() -> None:
    found = split_export(EXPORTED)
    assert found.workspace == ("enclave-images/agent", "sdk")
    assert "./" not in found.third_party
    assert "annotated-types==0.7.0 \\\n    --hash=sha256:" in found.third_party
