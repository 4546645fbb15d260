"""Running the gateway under uvicorn (uvloop + httptools), one or several worker processes.

`teeroute gateway serve` calls `serve`; uvicorn imports `create_app` in each worker, which
reads the config path from TEEROUTE_GATEWAY_CONFIG_FILE (set here), so every worker builds
its own Services from the same file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import uvicorn

from teeroute_gateway.app import GatewayApp
from teeroute_gateway.lifecycle import CONFIG_ENV, Lifecycle
from teeroute_gateway.settings import GatewaySettings
from teeroute_gateway.sources.file import load


def create_app() -> GatewayApp:
    return GatewayApp(Lifecycle.from_env())


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
    uvicorn.run(
        "teeroute_gateway.server:create_app",
        factory=True,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        workers=workers or settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
    return 0
