"""Running the gateway under uvicorn (uvloop + httptools), one or several worker processes.

`teeroute gateway serve` calls `serve`; uvicorn imports `create_app` in each worker, which
reads the config path from TEEROUTE_GATEWAY_CONFIG_FILE (set here), so every worker builds
its own Services from the same file. With `tlsCertFile` the gateway serves HTTPS; with `tee`
set it also attests itself (identity.py), each worker reading its TEE and certificate at start,
when uvicorn loads the same certificate (several workers share one TLS key, and so one binding).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import uvicorn

from teeroute_gateway.app import GatewayApp
from teeroute_gateway.identity import identity_from_settings
from teeroute_gateway.lifecycle import CONFIG_ENV, Lifecycle
from teeroute_gateway.protocol import ConnectionLimits, GuardedProtocol
from teeroute_gateway.settings import GatewaySettings
from teeroute_gateway.sources.file import load

log = logging.getLogger(__name__)


def create_app() -> GatewayApp:
    return GatewayApp(Lifecycle.from_env(), identity_from_settings(_settings()))


def _settings() -> GatewaySettings:
    config = os.environ.get(CONFIG_ENV)
    return load(Path(config)).settings if config else GatewaySettings.from_env(os.environ)


def serve(config: str | None, host: str | None, port: int | None, workers: int | None) -> int:
    if config:
        path = Path(config).resolve()
        settings = load(path).settings  # fail here, with the field path, before forking workers
        os.environ[CONFIG_ENV] = str(path)
    else:
        settings = GatewaySettings.from_env(os.environ)
        os.environ.pop(CONFIG_ENV, None)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    me = identity_from_settings(settings)  # likewise: a missing chip or certificate stops here
    if me is not None:
        log.info("self-attesting: %s, TLS key %s", me.tee, me.tls_spki_sha256.hex())
    uvicorn.run(
        "teeroute_gateway.server:create_app",
        factory=True,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        workers=workers or settings.workers,
        loop="uvloop",
        # httptools; unparseable requests in the API shape (http_protocol.py); head deadline
        # and bounds (protocol.py, docs/gateway-limits.md)
        http=functools.partial(  # type: ignore[arg-type]  # uvicorn only calls it, as a class
            GuardedProtocol, limits=ConnectionLimits.from_settings(settings)
        ),
        access_log=False,
        log_level="warning",
        lifespan="on",
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
    )
    return 0
