"""The gateway's config file: settings, MinerPools and Routes in one multi-document YAML.

    apiVersion: teeroute.dev/v1alpha1
    kind: GatewayConfig            # at most one; optional
    spec: {ledger: sqlite:///ledger.db, rateLimiter: memory, ...}   (settings.GatewaySettings)
    ---
    kind: MinerPool                # the CRD schema; external miners in spec.endpoints
    status: {endpoints: [...]}     # optional pre-verified evidence per endpoint (attestedAt,
                                   #   expiresAt, tee, measurement, ...), as the operator writes it
    ---
    kind: Route                    # the CRD schema

Namespaces default to `default`. An endpoint with a status entry is routed while that entry
is unexpired; one without is unattested (tee `none`) and routed only when the GatewayConfig
sets `allowUnattested: true`. The file is re-read when it changes (`FileSource.run`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from teeroute.admission import parse_time
from teeroute.api.minerpool import MinerPool
from teeroute.api.route import Route
from teeroute.errors import TeerouteError
from teeroute_gateway.catalog import UNATTESTED, Endpoint, Inventory, pool_key
from teeroute_gateway.sealed import public_key
from teeroute_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
KINDS = ("GatewayConfig", "MinerPool", "Route")


class ConfigInvalid(TeerouteError):
    exit_code = 2


@dataclass(frozen=True)
class FileConfig:
    path: Path
    settings: GatewaySettings
    inventory: Inventory


def load(path: str | Path) -> FileConfig:
    path = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as exc:
        raise ConfigInvalid(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigInvalid(f"{path}: not YAML: {exc}") from None
    settings: GatewaySettings | None = None
    routes: list[Route] = []
    pools: list[MinerPool] = []
    for index, doc in enumerate(docs):
        kind = doc.get("kind") if isinstance(doc, dict) else None
        where = f"{path} document {index + 1} ({kind or 'no kind'})"
        if kind not in KINDS:
            raise ConfigInvalid(f"{where}: kind must be one of {', '.join(KINDS)}")
        if kind == "GatewayConfig":
            if settings is not None:
                raise ConfigInvalid(f"{where}: only one GatewayConfig may be given")
            settings = _settings(doc, where, path)
        elif kind == "Route":
            routes.append(_parse(Route, _namespaced(doc), where))
        else:
            pools.append(_parse(MinerPool, _namespaced(doc), where))
    inventory = Inventory(
        routes=routes,
        pools=pools,
        endpoints={
            pool_key(p.metadata.namespace, p.metadata.name): static_endpoints(p) for p in pools
        },
    )
    return FileConfig(
        path=path, settings=settings or _settings({}, str(path), path), inventory=inventory
    )


def _settings(doc: dict[str, Any], where: str, path: Path) -> GatewaySettings:
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise ConfigInvalid(f"{where}: spec must be a mapping")
    try:
        settings = GatewaySettings.model_validate(spec)
    except ValidationError as exc:
        raise ConfigInvalid(f"{where}: {_errors(exc, 'spec')}") from None
    return settings.model_copy(
        update={
            "ledger": resolve_sqlite(settings.ledger, path.parent),
            **{
                field: path.parent / value  # Path / absolute path: the absolute path
                for field in ("simulated_chip_dir", "tls_cert_file", "tls_key_file")
                if (value := getattr(settings, field)) is not None
            },
        }
    )


def resolve_sqlite(url: str, base: Path) -> str:
    """sqlite:///relative.db is relative to the config file, not to the working directory."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return url
    target = Path(url[len(prefix) :])
    return prefix + str(target if target.is_absolute() else (base / target).resolve())


def _namespaced(doc: dict[str, Any]) -> dict[str, Any]:
    metadata = dict(doc.get("metadata") or {})
    metadata.setdefault("namespace", "default")
    return {**doc, "metadata": metadata}


def _parse(model: type[Any], doc: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ConfigInvalid(f"{where}: {_errors(exc)}") from None


def _errors(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(error["loc"]))
        parts.append(f"{field or '(document)'}: {error['msg']}")
    return "; ".join(parts)


def static_endpoints(pool: MinerPool) -> list[Endpoint]:
    namespace, name = pool.metadata.namespace, pool.metadata.name
    leases = {e.name: e for e in pool.status.endpoints}
    found = []
    for spec in pool.spec.endpoints or []:
        lease = leases.get(spec.name)
        key = f"{namespace}/{name}/{spec.name}"
        url = spec.url.rstrip("/")
        if lease is None or not lease.expires_at:
            found.append(Endpoint(key=key, pool=pool_key(namespace, name), url=url, tee=UNATTESTED))
            continue
        found.append(
            Endpoint(
                key=key,
                pool=pool_key(namespace, name),
                url=url,
                tee=lease.tee or pool.spec.tee.type,
                attested_at=parse_time(lease.attested_at),
                expires_at=parse_time(lease.expires_at),
                measurement=lease.measurement,
                chip_id=lease.chip_id,
                hpke_key_sha256=lease.hpke_key_sha256,
                signing_key_sha256=lease.signing_key_sha256,
                hpke_public=public_key(lease.hpke_public_key, lease.hpke_key_sha256),
            )
        )
    return found


class FileSource:
    """Delivers the file's inventory, then again whenever the file changes."""

    def __init__(
        self, path: Path, on_change: Callable[[Inventory], None], poll_s: float = 2.0
    ) -> None:
        self.path = path
        self.on_change = on_change
        self.poll_s = poll_s
        self.ready = False

    async def run(self) -> None:
        seen = self._stamp()
        self.on_change(load(self.path).inventory)
        self.ready = True
        while True:
            await asyncio.sleep(self.poll_s)
            stamp = self._stamp()
            if stamp == seen:
                continue
            seen = stamp
            try:
                self.on_change(load(self.path).inventory)
                log.info("config reloaded from %s", self.path)
            except ConfigInvalid as exc:
                log.error("config not reloaded, keeping the last good one: %s", exc)

    def _stamp(self) -> tuple[int, int]:
        try:
            stat = self.path.stat()
        except OSError:
            return (0, 0)
        return (stat.st_mtime_ns, stat.st_size)
