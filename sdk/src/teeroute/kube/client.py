"""JSON over HTTPS to the apiserver, asynchronously (httpx)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from teeroute.errors import TeerouteError
from teeroute.kube import paths
from teeroute.kube.config import ClusterConfig

Obj = dict[str, Any]


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
        self._http = httpx.AsyncClient(
            base_url=config.server, verify=config.ssl_context(), timeout=timeout_s
        )

    async def aclose(self) -> None:
        await self._http.aclose()

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

    async def patch_status(self, path: str, status: Obj) -> Obj:
        return await self._send(
            "PATCH",
            f"{path}/status",
            content=json.dumps({"status": status}),
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def delete(self, path: str) -> None:
        try:
            await self._send("DELETE", path, params={"propagationPolicy": "Background"})
        except ApiError as exc:
            if not exc.not_found:
                raise

    async def _send(self, method: str, path: str, **kwargs: Any) -> Obj:
        token = self.config.bearer_token()
        if token:
            kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {token}"
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, "Unreachable", f"{method} {path}: {exc}") from exc
        if response.status_code >= 400:
            raise _error(response)
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
