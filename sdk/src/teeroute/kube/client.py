"""JSON over HTTPS to the apiserver, asynchronously (httpx).

`Kube.watch` is list-then-watch as client-go's reflector does it: one list, then a watch from
the list's resourceVersion that is reopened when the server ends it, resumed from the last
resourceVersion seen (bookmarks included) after a network error, and replaced by a fresh
list when that version has expired (410 Gone). It never gives up: errors are logged and
retried with backoff, so a caller's cache simply stays as it was while the apiserver is away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from teeroute.errors import TeerouteError
from teeroute.kube import paths
from teeroute.kube.config import ClusterConfig

Obj = dict[str, Any]
Objs = list[Obj]  # `list` is also a method name of Kube
log = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
SYNCED = "SYNCED"
"""Yielded by `Kube.watch` (with an empty object) after every complete list: from then on the
events applied so far describe the whole collection."""
WATCH_READ_SLACK_S = 30.0
"""How much longer than the watch's own timeoutSeconds a silent stream is trusted before
it is taken for dead (bookmarks arrive about once a minute on a quiet watch)."""
MAX_CONNECTIONS = 16
"""Connections for plain requests (watches have their own client), at most. Few on
purpose: httpx's pool checks every open connection (expired? readable? a syscall through
anyio each) on every request and every response; at 100 kept-alive connections that was
~40 % of the operator's CPU while 500 pools converged. 16 requests in flight keep a local
apiserver busy; more only queue there instead of here."""


class ApiError(TeerouteError):
    """The apiserver refused a request; `status` is the HTTP code, `reason` its Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class Kube:
    def __init__(
        self, config: ClusterConfig, field_manager: str = "teeroute", timeout_s: float = 30.0
    ) -> None:
        self.config = config
        self.field_manager = field_manager
        self.timeout_s = timeout_s
        # Every connection kept for reuse: each new one costs a TLS handshake.
        self._http = httpx.AsyncClient(
            base_url=config.server,
            verify=config.ssl_context(),
            timeout=timeout_s,
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
            ),
        )
        # Requests queue here, in order and without a deadline, rather than in httpx's pool,
        # whose wait counts against `timeout_s`: 500 pools reconciled at once on a busy event
        # loop made every request time out waiting for a connection, kopf retried them all a
        # minute later, and nothing converged (e2e/bench/operatorscale.py).
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._watch_http: httpx.AsyncClient | None = None
        """Watches hold a connection each for minutes (a gateway watches a few collections
        per namespace): their own client, made at the first watch, so they never wait
        behind plain requests nor take their connections."""

    def _watches(self) -> httpx.AsyncClient:
        if self._watch_http is None:
            self._watch_http = httpx.AsyncClient(
                base_url=self.config.server,
                verify=self.config.ssl_context(),
                timeout=self.timeout_s,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            )
        return self._watch_http

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._watch_http is not None:
            await self._watch_http.aclose()

    async def get(self, path: str, **params: str) -> Obj:
        return await self._send("GET", path, params=params)

    async def get_or_none(self, path: str) -> Obj | None:
        try:
            return await self.get(path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def list(self, path: str, **params: str) -> list[Obj]:
        items: list[Obj] = (await self.get(path, **params))["items"]
        return items

    async def create(self, path: str, obj: Obj) -> Obj:
        return await self._send(
            "POST", path, content=json.dumps(obj), headers={"Content-Type": "application/json"}
        )

    async def apply(self, obj: Obj, force: bool = True) -> Obj:
        """Server-side apply: we own the fields we send, and only those."""
        params = {"fieldManager": self.field_manager, "force": "true" if force else "false"}
        return await self._send(
            "PATCH",
            paths.of(obj),
            params=params,
            content=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )

    async def merge_patch(self, path: str, patch: Obj) -> Obj:
        """JSON merge patch (RFC 7386): null removes a key, e.g. an annotation."""
        return await self._send(
            "PATCH",
            path,
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def patch_status(self, path: str, status: Obj) -> None:
        """Merge-patch the status subresource; the object written is not read back."""
        await self._send(
            "PATCH",
            f"{path}/status",
            content=json.dumps({"status": status}),
            headers={"Content-Type": "application/merge-patch+json"},
            decode=False,
        )

    async def merge_patch_only(self, path: str, patch: Obj) -> None:
        """`merge_patch` without reading back the object written: a pod's JSON (managed
        fields and all) is several KB, and decoding it was the largest single cost of the
        operator's annotation writes."""
        await self._send(
            "PATCH",
            path,
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
            decode=False,
        )

    async def delete(self, path: str) -> None:
        try:
            await self._send("DELETE", path, params={"propagationPolicy": "Background"})
        except ApiError as exc:
            if not exc.not_found:
                raise

    async def watch(
        self,
        path: str,
        *,
        label_selector: str = "",
        timeout_s: int = 300,
        backoff: Backoff | None = None,
    ) -> AsyncGenerator[tuple[str, Obj], None]:
        """List the collection at `path`, then watch it, until the caller stops iterating.

        Yields (type, object): ADDED, MODIFIED and DELETED as the apiserver reports them, and
        (SYNCED, {}) after every complete list. A re-list (after 410 Gone) yields only what
        changed since the caller's view, as ADDED/MODIFIED/DELETED events (a DELETED for an
        object that vanished unseen carries just its apiVersion, kind, name and namespace),
        so a cache that applies the events stays exact. `timeout_s` is the server-side
        timeoutSeconds of each watch request, after which it is reopened from where it was.
        """
        state = _WatchState(path, label_selector)
        retry = backoff or Backoff()
        listed_version = ""
        while True:
            started, received = time.monotonic(), state.received
            try:
                if not state.resource_version:
                    async for event in self._relist(state):
                        yield event
                    listed_version = state.resource_version
                    retry.reset()
                async for event in self._watch_once(state, timeout_s):
                    yield event
                lasted = time.monotonic() - started
                if state.received > received or lasted >= min(1.0, timeout_s / 2):
                    retry.reset()
                else:  # a stream that ends at once with nothing in it: don't spin
                    await asyncio.sleep(retry.next())
            except ApiError as exc:
                if exc.status == 410:
                    log.info("watch %s: resourceVersion expired; listing again", path)
                    if state.resource_version == listed_version:  # gone as soon as listed
                        await asyncio.sleep(retry.next())
                    state.resource_version = ""
                    continue
                delay = retry.next()
                log.warning("watch %s: %s; retrying in %.1f s", path, exc, delay)
                await asyncio.sleep(delay)

    async def _relist(self, state: _WatchState) -> AsyncIterator[tuple[str, Obj]]:
        items, resource_version = await self._list_all(state)
        listed: set[tuple[str, str]] = set()
        for item in items:
            key = _key(item)
            listed.add(key)
            version = (item.get("metadata") or {}).get("resourceVersion", "")
            before = state.known.get(key)
            state.known[key] = version
            if before is None:
                yield ADDED, item
            elif before != version:
                yield MODIFIED, item
        for key in [k for k in state.known if k not in listed]:
            del state.known[key]
            yield DELETED, state.tombstone(key)
        state.resource_version = resource_version
        yield SYNCED, {}

    async def _list_all(self, state: _WatchState) -> tuple[Objs, str]:
        """Every item, page by page, each with the apiVersion and kind a list leaves out."""
        items: Objs = []
        params = {"limit": "500"}
        if state.label_selector:
            params["labelSelector"] = state.label_selector
        while True:
            page = await self.get(state.path, **params)
            state.api_version = page.get("apiVersion", "")
            state.kind = str(page.get("kind", "")).removesuffix("List")
            for item in page.get("items") or []:
                item.setdefault("apiVersion", state.api_version)
                item.setdefault("kind", state.kind)
                items.append(item)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion", ""))
            params["continue"] = meta["continue"]

    async def _watch_once(
        self, state: _WatchState, timeout_s: int
    ) -> AsyncIterator[tuple[str, Obj]]:
        params = {
            "watch": "true",
            "resourceVersion": state.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
        }
        if state.label_selector:
            params["labelSelector"] = state.label_selector
        timeout = httpx.Timeout(self.timeout_s, read=timeout_s + WATCH_READ_SLACK_S)
        try:
            async with self._watches().stream(
                "GET", state.path, params=params, headers=self._headers(), timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response)
                async for line in response.aiter_lines():
                    event = state.apply(_event(line)) if line.strip() else None
                    if event is not None:
                        yield event
        except httpx.HTTPError as exc:
            raise ApiError(0, "Unreachable", f"watch {state.path}: {exc}") from exc

    def _headers(self) -> dict[str, str]:
        token = self.config.bearer_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _send(self, method: str, path: str, *, decode: bool = True, **kwargs: Any) -> Obj:
        """The response's JSON object (`decode` False: {} without parsing the body)."""
        kwargs.setdefault("headers", {}).update(self._headers())
        try:
            async with self._slots:
                response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, "Unreachable", f"{method} {path}: {exc}") from exc
        if response.status_code >= 400:
            raise _error(response)
        if not decode:
            return {}
        result: Obj = response.json()
        return result


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        return ApiError(
            response.status_code, str(body.get("reason", "")), str(body.get("message", ""))[:2000]
        )
    except ValueError:
        return ApiError(response.status_code, "", response.text[:200])


class Backoff:
    """Exponential backoff with jitter: `first_s`, doubling up to `max_s`; `reset` after a
    success starts over."""

    def __init__(self, first_s: float = 0.5, max_s: float = 30.0) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self._next = first_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.max_s)
        # Jitter spreads reconnecting clients apart; not a secret, so not a CSPRNG.
        return delay * random.uniform(0.8, 1.2)  # noqa: S311

    def reset(self) -> None:
        self._next = self.first_s


@dataclass
class _WatchState:
    """Where one `Kube.watch` stands: the version to resume from and what the caller has."""

    path: str
    label_selector: str
    resource_version: str = ""
    known: dict[tuple[str, str], str] = field(default_factory=dict)
    """(namespace, name) -> resourceVersion of every object the caller was told about."""
    received: int = 0
    api_version: str = ""
    kind: str = ""

    def apply(self, event: Obj) -> tuple[str, Obj] | None:
        """Track one watch event; the event to hand on, or None (bookmarks)."""
        self.received += 1
        type_, obj = event.get("type"), event.get("object") or {}
        if type_ == "ERROR":  # a Status; 410 Gone: the version is too old to watch from
            raise ApiError(
                int(obj.get("code") or 0), str(obj.get("reason", "")), str(obj.get("message", ""))
            )
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if version:
            self.resource_version = version
        if type_ in (ADDED, MODIFIED):
            self.known[_key(obj)] = version
        elif type_ == DELETED:
            self.known.pop(_key(obj), None)
        else:
            return None
        return str(type_), obj

    def tombstone(self, key: tuple[str, str]) -> Obj:
        meta = {"namespace": key[0], "name": key[1]} if key[0] else {"name": key[1]}
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": meta}


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _event(line: str) -> Obj:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise ApiError(0, "BadWatchEvent", f"not JSON: {line[:200]!r}") from exc
    if not isinstance(event, dict):
        raise ApiError(0, "BadWatchEvent", f"not an event: {line[:200]!r}")
    return event
