"""The proxy's loop: relist Services and EndpointSlices, rebuild the table, apply it."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx

from teeroute_sandbox.restclient import ApiError, KubeRest
from teeroute_sandbox.serviceproxy import table
from teeroute_sandbox.serviceproxy.forward import Forwarder

POLL_S = 1.0


async def run(api: KubeRest, forwarder: Forwarder) -> None:
    while True:
        try:
            services, slices = await asyncio.to_thread(_listing, api)
            await forwarder.apply(table.build(services, slices))
        except (ApiError, httpx.HTTPError) as exc:
            print(f"{time.strftime('%H:%M:%S')} listing failed ({exc}); retrying", flush=True)
        await asyncio.sleep(POLL_S)


def _listing(api: KubeRest) -> tuple[list[table.Obj], list[table.Obj]]:
    services = api.get("/api/v1/services")["items"]
    slices = api.get("/apis/discovery.k8s.io/v1/endpointslices")["items"]
    return services, slices


def main(kubeconfig: Path, kubernetes_ip: str) -> None:
    print("service proxy: ClusterIP Services of the sandbox", file=sys.stderr, flush=True)
    asyncio.run(run(KubeRest(kubeconfig), Forwarder(kubernetes_ip)))
