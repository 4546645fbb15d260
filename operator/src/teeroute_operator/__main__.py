"""`python -m teeroute_operator`: run the operator with settings from the environment."""

from __future__ import annotations

import logging

import kopf

from teeroute_operator.handlers import build_registry
from teeroute_operator.settings import OperatorSettings


def main() -> None:
    settings = OperatorSettings()
    kopf.configure(verbose=False)
    # One line per request, or per handler run, is noise; Events carry what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        registry=build_registry(settings),
        standalone=not settings.peering,
        peering_name=settings.peering or None,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=(
            f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
        ),
    )


if __name__ == "__main__":
    main()
