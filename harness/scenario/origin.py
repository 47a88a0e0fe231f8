"""``stack.origin`` and ``traffic.requests``: the user's own service and the requests sent to it.

Without ``stack.origin`` the stack runs the reference echo origin and visitors send the echo mix
(``traffic.mix``); ``traffic.requests`` replaces the mix with the user's requests, each judged
by its status and expected body (see ``harness.probes.visitors``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import InitErrorDetails

from harness.scenario.base import StrictModel, custom_error, raise_errors
from harness.scenario.durations import Duration
from harness.stack.user_origin import UserOrigin, origin_problem

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class OriginSpec(StrictModel):
    """The user's service: a ``command`` to start, the ``url`` of a running one, or ``ingress``
    rules (cloudflared's; with ``command``, ``{port}`` in a service is its port)."""

    command: str | None = Field(
        default=None, description="run by /bin/sh; {port} = a free port, {python} = Outlast's"
    )
    health: str = Field(default="/", description="ready when this path answers below 500")
    url: str | None = Field(default=None, description="an already running service")
    ingress: tuple[dict[str, Any], ...] = Field(
        default=(), description="cloudflared ingress rules, the last one a catch-all"
    )
    ready_timeout: Duration = Field(
        default=30.0, gt=0, description="how long the command may take to become ready"
    )
    image: str | None = Field(default=None, description="Compose backend: an image to run")
    build: str | None = Field(
        default=None, description="Compose backend: a build context (directory with a Dockerfile)"
    )
    port: int | None = Field(
        default=None, description="Compose backend: the port the container listens on (8080)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> OriginSpec:
        problem = origin_problem(
            self.command,
            self.url,
            self.ingress,
            self.health,
            self.image,
            self.build,
            self.port,
        )
        if problem is not None:
            loc, message = problem
            raise_errors("OriginSpec", [custom_error(loc, "origin", message, None)])
        return self

    def user_origin(self) -> UserOrigin:
        """The stack backends' view of this origin."""
        return UserOrigin(
            command=self.command,
            health=self.health,
            url=self.url,
            ingress=self.ingress,
            image=self.image,
            build=self.build,
            port=self.port,
        )


class UserRequest(StrictModel):
    """One request of the user's traffic: HTTP (``method``, ``path``...) or WebSocket (``ws``)."""

    method: str | None = Field(default=None, description="HTTP method (default GET)")
    path: str | None = Field(default=None, description="HTTP path, with any query")
    body: str | None = Field(default=None, description="request body (text)")
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: int | tuple[int, ...] | None = Field(
        default=None, description="accepted status(es); default any below 400"
    )
    expect_body_contains: str | None = None
    static: bool = Field(
        default=False,
        description="the response body never changes: a different SHA-256 is corruption",
    )
    ws: str | None = Field(default=None, description="WebSocket path")
    send: str | None = Field(default=None, description="text message sent once connected")
    expect: str | None = Field(default=None, description="text the answer must contain")
    weight: float = Field(default=1.0, gt=0, description="relative share of the traffic")

    @field_validator("method")
    @classmethod
    def _method(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in HTTP_METHODS:
            raise ValueError(f'method "{value}" (expected one of: {", ".join(HTTP_METHODS)})')
        return None if value is None else value.upper()

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: int | tuple[int, ...] | None) -> int | tuple[int, ...] | None:
        for code in (value,) if isinstance(value, int) else value or ():
            if not 100 <= code <= 599:
                raise ValueError(f"status {code} is not an HTTP status (100-599)")
        if isinstance(value, tuple) and not value:
            raise ValueError("give at least one status")
        return value

    @model_validator(mode="after")
    def _http_or_ws(self) -> UserRequest:
        errors: list[InitErrorDetails] = []
        if self.ws is not None:
            for key in ("method", "path", "body", "expect_status", "expect_body_contains"):
                if getattr(self, key) is not None:
                    message = f'"{key}" is for HTTP requests (a WebSocket one has ws, send, expect)'
                    errors.append(custom_error((key,), "ws", message, getattr(self, key)))
            if self.static:
                message = '"static" is for GET requests'
                errors.append(custom_error(("static",), "ws", message, True))
            if not self.ws.startswith("/"):
                message = f'WebSocket path "{self.ws}" must start with "/"'
                errors.append(custom_error(("ws",), "path", message, self.ws))
        else:
            for key in ("send", "expect"):
                if getattr(self, key) is not None:
                    message = f'"{key}" is for WebSocket requests (give "ws: /path")'
                    errors.append(custom_error((key,), "http", message, getattr(self, key)))
            if self.path is None:
                message = 'give "path" (an HTTP request) or "ws" (a WebSocket one)'
                errors.append(custom_error(("path",), "missing", message, None))
            elif not self.path.startswith("/"):
                message = f'path "{self.path}" must start with "/"'
                errors.append(custom_error(("path",), "path", message, self.path))
            if self.static and self.http_method not in ("GET", "HEAD"):
                message = f'"static" is for GET requests, not {self.http_method}'
                errors.append(custom_error(("static",), "static", message, True))
        raise_errors("UserRequest", errors)
        return self

    @property
    def kind(self) -> Literal["http", "ws"]:
        return "ws" if self.ws is not None else "http"

    @property
    def http_method(self) -> str:
        return self.method or "GET"

    @property
    def statuses(self) -> tuple[int, ...] | None:
        """Accepted statuses, or ``None`` for "any below 400"."""
        if self.expect_status is None:
            return None
        return (self.expect_status,) if isinstance(self.expect_status, int) else self.expect_status

    def label(self) -> str:
        """``GET /index.html`` or ``WS /socket``."""
        return f"WS {self.ws}" if self.ws is not None else f"{self.http_method} {self.path}"
