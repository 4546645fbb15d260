"""Which external endpoint URLs the operator may challenge (issue 14, hole 7): a pool author
must not be able to point the operator at the cloud metadata service, loopback or an internal
address and read how it answered from the pool's status."""

from __future__ import annotations

import pytest

from teeroute_operator.egress import EgressAllow, allow_of, check_endpoint_url
from teeroute_operator.settings import OperatorSettings

DEFAULT = EgressAllow()
HTTP_AND_LOOPBACK = EgressAllow(schemes=frozenset({"https", "http"}), loopback=True)
MINERS_ONLY = EgressAllow(hosts=("*.miners.example", "203.0.113.0/24", "10.8.0.7"))


@pytest.mark.parametrize(
    "url",
    [
        "https://miner.example:8443",
        "https://miner.example.com/",
        "https://MINER.Example.",
        "https://8.8.8.8:8443",
        "https://[2001:4860:4860::8888]:8443",
    ],
)
def test_public_https_endpoints_are_allowed_by_default(url: str) -> None:
    assert check_endpoint_url(url, DEFAULT) is None


@pytest.mark.parametrize(
    ("url", "allow", "reason"),
    [
        ("http://miner.example", DEFAULT, 'scheme "http" is not allowed (allowed: https)'),
        ("file:///etc/passwd", DEFAULT, 'scheme "file" is not allowed (allowed: https)'),
        ("gopher://miner.example", HTTP_AND_LOOPBACK, 'scheme "gopher" is not allowed'),
        ("https://user:pw@miner.example", DEFAULT, "credentials in the URL are not allowed"),
        ("https://", DEFAULT, "the URL has no host"),
        ("https://miner.example:99999", DEFAULT, "not a valid URL"),
        ("https://169.254.169.254", DEFAULT, '"169.254.169.254" is a link-local or cloud metadata'),
        ("http://169.254.169.254", HTTP_AND_LOOPBACK, "is a link-local or cloud metadata"),
        ("https://[fd00:ec2::254]", DEFAULT, '"fd00:ec2::254" is a link-local or cloud metadata'),
        ("https://[fe80::1]", DEFAULT, "is a link-local or cloud metadata"),
        ("https://[::ffff:169.254.169.254]", DEFAULT, "is a link-local or cloud metadata"),
        ("https://metadata.google.internal", DEFAULT, "is a link-local or cloud metadata"),
        ("https://0.0.0.0:8443", HTTP_AND_LOOPBACK, "is the unspecified address"),
        ("https://127.0.0.1:8443", DEFAULT, '"127.0.0.1" is a loopback address (not allowed)'),
        ("https://[::1]:8443", DEFAULT, '"::1" is a loopback address (not allowed)'),
        ("https://localhost:8443", DEFAULT, '"localhost" is a loopback address (not allowed)'),
        ("https://0x7f.1:8443", DEFAULT, '"0x7f.1" is a loopback address'),  # inet_aton
        ("https://2130706433", DEFAULT, '"2130706433" is a loopback address'),
        ("https://10.0.0.5:8443", DEFAULT, 'host "10.0.0.5" matches no allowed host pattern'),
        ("https://192.168.1.10", DEFAULT, "matches no allowed host pattern"),
        ("https://100.64.0.1", DEFAULT, "matches no allowed host pattern"),  # shared (CGNAT)
        ("https://kubernetes", DEFAULT, 'host "kubernetes" matches no allowed host pattern'),
        ("https://kubernetes.default.svc", DEFAULT, "matches no allowed host pattern"),
        ("https://api.default.svc.cluster.local", DEFAULT, "matches no allowed host pattern"),
        ("https://printer.local", DEFAULT, "matches no allowed host pattern"),
        ("https://miner.example", MINERS_ONLY, 'host "miner.example" matches no allowed host'),
        ("https://evilminers.example", MINERS_ONLY, "matches no allowed host pattern"),
        ("https://10.8.0.8", MINERS_ONLY, "matches no allowed host pattern"),
    ],
)
def test_disallowed_endpoint_urls_are_refused_with_the_reason(
    url: str, allow: EgressAllow, reason: str
) -> None:
    found = check_endpoint_url(url, allow)
    assert found is not None and reason in found


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1:8443", HTTP_AND_LOOPBACK),
        ("http://localhost:8443", HTTP_AND_LOOPBACK),
        ("https://a.miners.example", MINERS_ONLY),
        ("https://b.a.miners.example:8443", MINERS_ONLY),
        ("https://203.0.113.200", MINERS_ONLY),
        ("https://10.8.0.7:8443", MINERS_ONLY),  # a private address named explicitly
    ],
)
def test_what_the_allow_list_opens_is_allowed(url: str, allow: EgressAllow) -> None:
    assert check_endpoint_url(url, allow) is None


def test_the_allow_list_comes_from_the_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert allow_of(OperatorSettings()) == EgressAllow()
    monkeypatch.setenv("TEEROUTE_OPERATOR_EXTERNAL_SCHEMES", "https, http")
    monkeypatch.setenv("TEEROUTE_OPERATOR_EXTERNAL_HOSTS", "*.miners.example, 10.0.0.0/8")
    monkeypatch.setenv("TEEROUTE_OPERATOR_EXTERNAL_ALLOW_LOOPBACK", "true")
    assert allow_of(OperatorSettings()) == EgressAllow(
        schemes=frozenset({"https", "http"}),
        hosts=("*.miners.example", "10.0.0.0/8"),
        loopback=True,
    )


def test_only_http_and_https_can_be_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEEROUTE_OPERATOR_EXTERNAL_SCHEMES", "https,gopher")
    with pytest.raises(ValueError, match="external_schemes"):
        OperatorSettings()
