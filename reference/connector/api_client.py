"""A small synchronous client of the control plane's v4 API.

Every failure is an :class:`ApiError` carrying the HTTP status, the envelope's error code and its
message (or, for network trouble, status 0 and a message saying what to check).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

# Codes from the control plane's error table (docs/controlplane.md) that callers branch on.
CODE_RECORD_EXISTS = 1003
CODE_TUNNEL_NOT_FOUND = 1005
CODE_TUNNEL_NAME_CONFLICT = 1006
CODE_TUNNEL_HAS_CONNECTIONS = 1007
CODE_TUNNEL_LIMIT_REACHED = 1008
CODE_TUNNEL_ALREADY_DELETED = 1011
CODE_FORBIDDEN = 10000
CODE_UNKNOWN_TOKEN = 10002
CODE_TOKEN_ROLLED = 10003


class ApiError(Exception):
    """The API refused a request (or could not be reached: ``status == 0``)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ListPage:
    items: list[dict[str, Any]]
    total_count: int


class ApiClient:
    """``Authorization: Bearer <token>`` requests to ``endpoint`` (e.g. http://127.0.0.1:8080)."""

    def __init__(self, endpoint: str, token: str, *, timeout: float = 15.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._client = httpx.Client(
            base_url=self.endpoint + "/client/v4",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json;version=1"},
            timeout=timeout,
            trust_env=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ generic

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send a request; return the whole envelope of a successful answer."""
        try:
            response = self._client.request(method, path, json=json, params=params)
        except httpx.TimeoutException:
            raise ApiError(
                0,
                0,
                f"the control plane at {self.endpoint} did not answer in time; "
                "check that it is running and reachable",
            ) from None
        except httpx.HTTPError as exc:
            raise ApiError(
                0,
                0,
                f"cannot reach the control plane at {self.endpoint} ({exc}); "
                "check the URL and that it is running",
            ) from None
        try:
            body = response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                0,
                f"{self.endpoint} answered {response.status_code} without a JSON "
                "body; is this an Outlast control plane?",
            ) from None
        if not isinstance(body, dict):
            raise ApiError(response.status_code, 0, f"{self.endpoint} answered an unexpected body")
        if response.is_success and body.get("success", False):
            return body
        errors = body.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
        raise ApiError(
            response.status_code,
            int(first.get("code", 0) or 0),
            str(first.get("message") or f"HTTP {response.status_code}"),
        )

    def result(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs)["result"]

    def pages(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        per_page: int = 100,
        max_pages: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list."""
        for page in range(1, max_pages + 1):
            body = self.call(
                "GET", path, params={**(params or {}), "page": page, "per_page": per_page}
            )
            items = body["result"]
            yield from items
            info = body.get("result_info") or {}
            if len(items) < per_page or page * per_page >= int(info.get("total_count", 0)):
                return

    # ------------------------------------------------------------------ typed helpers

    def zones(self, name: str | None = None) -> list[dict[str, Any]]:
        return list(self.pages("/zones", {"name": name} if name else None))

    def issue_origin_certificate(self, zone_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.result("POST", f"/zones/{zone_id}/origin_certificate")
        return result

    def create_tunnel(self, account_id: str, name: str, secret_b64: str) -> dict[str, Any]:
        result: dict[str, Any] = self.result(
            "POST",
            f"/accounts/{account_id}/cfd_tunnel",
            json={"name": name, "tunnel_secret": secret_b64},
        )
        return result

    def list_tunnels(
        self, account_id: str, *, is_deleted: bool | None = False, name: str | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if is_deleted is not None:
            params["is_deleted"] = "true" if is_deleted else "false"
        if name is not None:
            params["name"] = name
        return list(self.pages(f"/accounts/{account_id}/cfd_tunnel", params))

    def get_tunnel(self, account_id: str, tunnel_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.result(
            "GET", f"/accounts/{account_id}/cfd_tunnel/{tunnel_id}"
        )
        return result

    def delete_tunnel(self, account_id: str, tunnel_id: str, *, cascade: bool) -> dict[str, Any]:
        result: dict[str, Any] = self.result(
            "DELETE",
            f"/accounts/{account_id}/cfd_tunnel/{tunnel_id}",
            params={"cascade": "true"} if cascade else None,
        )
        return result

    def tunnel_connections(self, account_id: str, tunnel_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.result(
            "GET", f"/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections"
        )
        return result

    def cleanup_connections(
        self, account_id: str, tunnel_id: str, connector_id: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.result(
            "DELETE",
            f"/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections",
            params={"client_id": connector_id} if connector_id else None,
        )
        return result

    def tunnel_token(self, account_id: str, tunnel_id: str) -> str:
        return str(self.result("GET", f"/accounts/{account_id}/cfd_tunnel/{tunnel_id}/token"))

    def route_dns(
        self, zone_id: str, tunnel_id: str, hostname: str, overwrite: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.result(
            "PUT",
            f"/zones/{zone_id}/tunnels/{tunnel_id}/routes",
            json={"type": "dns", "user_hostname": hostname, "overwrite_existing": overwrite},
        )
        return result

    def dns_records(self, zone_id: str, **filters: str) -> list[dict[str, Any]]:
        return list(self.pages(f"/zones/{zone_id}/dns_records", filters or None))

    def audit_logs(self, account_id: str, **filters: str) -> list[dict[str, Any]]:
        return list(self.pages(f"/accounts/{account_id}/audit_logs", filters or None))
