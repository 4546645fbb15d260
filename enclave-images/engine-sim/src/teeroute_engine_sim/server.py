"""Serve the app with uvicorn (uvloop, httptools, no access log: the hot path stays lean).

Several workers need the app as an import string, so their settings travel in one
environment variable to `app_from_environment` in each worker process.
"""

from __future__ import annotations

import os
import sys

import uvicorn
from starlette.applications import Starlette

from teeroute_engine_sim.app import create_app
from teeroute_engine_sim.settings import EngineSettings

SETTINGS_VARIABLE = "TEEROUTE_ENGINE_SIM_SETTINGS"
GRACEFUL_SHUTDOWN_S = 5  # then streams still open are cut


def app_from_environment() -> Starlette:
    return create_app(EngineSettings.model_validate_json(os.environ[SETTINGS_VARIABLE]))


def describe(settings: EngineSettings) -> str:
    pace = f"{settings.tokens_per_s:g} tokens/s" if settings.tokens_per_s > 0 else "unpaced"
    return (
        f"engine-sim: serving {', '.join(settings.models)} on "
        f"http://{settings.host}:{settings.port} (ttft {settings.ttft_ms:g} ms, {pace}, "
        f"fail-rate {settings.fail_rate:g}, seed {settings.seed}, workers {settings.workers}"
        + (f", API key from ${settings.api_key_env}" if settings.api_key_env else "")
        + ")"
    )


def serve(settings: EngineSettings) -> None:
    print(describe(settings), file=sys.stderr, flush=True)
    several = settings.workers > 1
    if several:
        os.environ[SETTINGS_VARIABLE] = settings.model_dump_json()
    uvicorn.run(
        f"{__name__}:app_from_environment" if several else create_app(settings),
        factory=several,
        workers=settings.workers if several else None,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
