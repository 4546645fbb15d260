"""`python -m teeroute_operator`: run the operator with settings from the environment."""

from __future__ import annotations

import logging
import secrets
import sys

import kopf

from teeroute_operator import memory, release_key
from teeroute_operator.handlers import build_registry
from teeroute_operator.settings import OperatorSettings

log = logging.getLogger("teeroute_operator")


def main() -> None:
    memory.limit_arenas()  # before kopf's and the verifier's threads start
    memory.start_trimming()
    settings = OperatorSettings()
    signer = None
    if settings.release_key_file is not None:
        try:
            signer = release_key.load(settings.release_key_file)
        except release_key.ReleaseKeyError as exc:
            sys.exit(f"teeroute_operator: {exc}")
    kopf.configure(verbose=False)
    # One line per request, or per handler run, is noise; Events carry what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if signer is None:
        log.warning(
            "%s is unset: no pool's secrets will be released, and no admission record is "
            "signed, so no gateway routes to any endpoint",
            release_key.SETTING,
        )
    kopf.run(
        registry=build_registry(settings, signer),
        standalone=not settings.peering,
        peering_name=settings.peering or None,
        priority=peering_priority(settings),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=(
            f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
        ),
    )


def peering_priority(settings: OperatorSettings) -> int:
    """This replica's kopf priority. kopf pauses every peer when two share one, and the
    replicas of one Deployment share their settings, so each draws its own: the highest is
    active, the others stand by until its peering entry goes (chart operator.replicas > 1)."""
    return secrets.randbelow(2**31 - 1) + 1 if settings.peering else 0


if __name__ == "__main__":
    main()
