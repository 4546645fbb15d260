"""Which external endpoint URLs the operator may call (pure).

A MinerPool's `endpoints[].url` is written by whoever may write MinerPools, and the operator
POSTs a challenge to it from inside the cluster, then reports how the address answered in
the pool's status. Unchecked, that is a port scanner with the operator's network position:
the cloud metadata service, the apiserver, any in-cluster Service. So a URL is challenged only
when `check_endpoint_url` finds nothing wrong with it; otherwise the endpoint is rejected
(check `egress.url`) with the reason, and nothing is sent.

The rules, in order (the first that fails is the reason):
- the scheme is one of `EgressAllow.schemes` (default https; http only when listed);
- no credentials in the URL, a host is present, the port (if any) is valid;
- never a link-local or cloud metadata address (169.254.0.0/16, fe80::/10, fd00:ec2::254,
  metadata.google.internal), nor the unspecified address;
- loopback (127.0.0.0/8, ::1, localhost) only when `EgressAllow.loopback`;
- the host matches a pattern of `EgressAllow.hosts`: `*` (any public DNS name or public IP
  address: not a private, shared, reserved or multicast address, not a single-label name nor
  one under .local, .internal, .svc, .cluster.local), `*.example.com` (any name under
  example.com), `miner.example.com` (that name), `10.0.0.0/8` or `10.1.2.3` (addresses).
A name is not resolved here: a public name that resolves to a private address passes (the
operator's NetworkPolicy egress rules are the control for that; docs/sealed-mode.md).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from teeroute_operator.settings import OperatorSettings

CHECK = "egress.url"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
METADATA_ADDRESSES = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)
INTERNAL_SUFFIXES = (".local", ".internal", ".svc", ".cluster.local", ".localhost", ".localdomain")


@dataclass(frozen=True)
class EgressAllow:
    """What the operator may call (OperatorSettings.external_*)."""

    schemes: frozenset[str] = frozenset({"https"})
    hosts: tuple[str, ...] = ("*",)
    loopback: bool = False


def check_endpoint_url(url: str, allow: EgressAllow) -> str | None:
    """Why the operator may not challenge `url`; None when it may."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError:
        return "not a valid URL"
    problem = _form_problem(parts, allow)
    if problem is not None:
        return problem
    host = (parts.hostname or "").rstrip(".").lower()
    address = _address(host)
    problem = _forbidden(host, address, allow)
    if problem is not None:
        return problem
    if _loopback(host, address):
        return None  # allowed (else _forbidden said no): a test or single-machine cluster
    if any(_matches(pattern, host, address) for pattern in allow.hosts):
        return None
    return f'host "{host}" matches no allowed host pattern ({", ".join(allow.hosts) or "none"})'


def _form_problem(parts: SplitResult, allow: EgressAllow) -> str | None:
    scheme = parts.scheme.lower()
    if scheme not in allow.schemes:
        allowed = ", ".join(sorted(allow.schemes))
        return f'scheme "{scheme}" is not allowed (allowed: {allowed})'
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not allowed"
    if not parts.hostname:
        return "the URL has no host"
    return None


def _address(host: str) -> IpAddress | None:
    """The address a host names literally, in any form the resolver accepts (inet_aton's
    `0x7f.1` or `2130706433` too; IPv4-mapped IPv6 as its IPv4 address)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forbidden(host: str, address: IpAddress | None, allow: EgressAllow) -> str | None:
    """The addresses no allow-list opens (metadata, link-local, unspecified), and loopback."""
    if host in METADATA_NAMES or (
        address is not None and any(address in net for net in METADATA_ADDRESSES)
    ):
        return f'host "{host}" is a link-local or cloud metadata address'
    if address is not None and address.is_unspecified:
        return f'host "{host}" is the unspecified address'
    if _loopback(host, address) and not allow.loopback:
        return f'host "{host}" is a loopback address (not allowed)'
    return None


def _loopback(host: str, address: IpAddress | None) -> bool:
    if address is not None:
        return address.is_loopback
    return host == "localhost" or host.endswith(".localhost")


def _matches(pattern: str, host: str, address: IpAddress | None) -> bool:
    pattern = pattern.strip().lower()
    if pattern == "*":
        return _public(host, address)
    if address is not None:
        try:
            return address in ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _public(host: str, address: IpAddress | None) -> bool:
    """What `*` stands for: public addresses, and names that are not internal by form."""
    if address is not None:
        return address.is_global and not address.is_multicast
    if "." not in host:
        return False
    return not host.endswith(INTERNAL_SUFFIXES)


def allow_of(settings: OperatorSettings) -> EgressAllow:
    """The allow-list the operator's settings describe."""
    return EgressAllow(
        schemes=frozenset(settings.external_schemes),
        hosts=tuple(h.strip().lower() for h in settings.external_hosts if h.strip()),
        loopback=settings.external_allow_loopback,
    )
