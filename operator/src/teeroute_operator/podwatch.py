"""The pools' pods, followed with the operator's own watch.

A kopf handler per pod event cost more than anything else while 500 pools came up: kopf keeps
state and a queue per object and does its own bookkeeping for each of the 2,000 pods' several
events, and a pod that became Ready woke its pool's sweeper only once kopf got to its event
(tens of seconds late in the burst: docs/operator-scale.md). Here one watch per namespace (or
one for the cluster) hands each event straight to `on_event`; Kube.watch lists, watches,
resumes and re-lists (after 410 Gone, with made-up DELETED events for what vanished unseen).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from teeroute.kube import Kube, paths
from teeroute.kube.client import SYNCED

log = logging.getLogger(__name__)
Obj = dict[str, Any]
RESTART_S = 5.0


async def follow(
    kube: Kube,
    namespaces: Sequence[str],
    label_selector: str,
    on_event: Callable[[str, Obj], None],
    on_synced: Callable[[], None] = lambda: None,
) -> None:
    """Until cancelled: every event of the pods matching `label_selector` in `namespaces`
    (none: the whole cluster), as (ADDED|MODIFIED|DELETED, pod); `on_synced()` once per
    namespace (or once for the cluster), after its first complete list."""
    scopes: list[str | None] = list(namespaces) or [None]
    await asyncio.gather(
        *(_follow_one(kube, ns, label_selector, on_event, on_synced) for ns in scopes)
    )


async def _follow_one(
    kube: Kube,
    namespace: str | None,
    label_selector: str,
    on_event: Callable[[str, Obj], None],
    on_synced: Callable[[], None],
) -> None:
    path = paths.collection("v1", "Pod", namespace)
    first = True
    while True:
        try:
            async for kind, pod in kube.watch(path, label_selector=label_selector):
                if kind != SYNCED:
                    on_event(kind, pod)
                elif first:
                    first = False
                    on_synced()
        except asyncio.CancelledError:
            raise
        except Exception:  # Kube.watch retries apiserver errors itself; anything else: again
            log.exception("following pods at %s failed; again in %.0f s", path, RESTART_S)
            await asyncio.sleep(RESTART_S)
