"""`teeroute gateway gateway-key`: make the key the gateway signs its requests to agents with,
show its public half; and a gateway whose key file is unusable refuses to start."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from teeroute import cli
from teeroute_gateway import gateway_key
from teeroute_gateway.dispatch import Dispatcher
from teeroute_gateway.health import HealthBook
from teeroute_gateway.metrics import GatewayMetrics
from teeroute_gateway.settings import GatewaySettings
from teeroute_gateway.upstream import UpstreamPool


def test_a_new_key_is_private_to_its_owner_and_its_public_half_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.pem"
    assert cli.main(["gateway", "gateway-key", "--out", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = capsys.readouterr().out.strip()
    printed = dict(line.partition("=")[::2] for line in out.splitlines())
    assert set(printed) == {"TEEROUTE_OPERATOR_GATEWAY_KEYS", "TEEROUTE_AGENT_GATEWAY_KEYS"}
    public = gateway_key.load(path).public_key().public_bytes_raw()
    assert {base64.b64decode(v, validate=True) for v in printed.values()} == {public}
    assert cli.main(["gateway", "gateway-key", "--show", str(path)]) == 0
    assert capsys.readouterr().out.strip() == out


def test_an_existing_file_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.pem"
    path.write_text("precious")
    assert cli.main(["gateway", "gateway-key", "--out", str(path)]) == 2
    assert path.read_text() == "precious"
    assert f"{path} exists: not overwriting it" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "no such file"), (b"not a key", "not a PEM private key")],
)
def test_a_gateway_with_an_unusable_key_file_does_not_start(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "gateway.pem"
    if content is not None:
        path.write_bytes(content)
    settings = GatewaySettings(gateway_key_file=path)
    with pytest.raises(gateway_key.GatewayKeyError, match=f"gatewayKeyFile {path}: {problem}"):
        Dispatcher(UpstreamPool(), HealthBook(), GatewayMetrics(), settings)
