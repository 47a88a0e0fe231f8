"""The OpenAPI 3 document of what the control plane serves, built from the route table."""

from __future__ import annotations

import re
from typing import Any

from reference.controlplane.errors import HTTP_STATUS, ErrorCode
from reference.controlplane.routes import ROUTES, QueryParam, RouteSpec

_PLACEHOLDER = re.compile(r"{([a-z_]+)}")
_PATH_PARAM_DOC = {
    "account_id": "Account id (32 hex digits).",
    "zone_id": "Zone id (32 hex digits).",
    "tunnel_id": "Tunnel id (UUID).",
    "record_id": "DNS record id (32 hex digits).",
}


def _envelope(result: dict[str, Any] | None = None, *, is_list: bool = False) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "success": {"type": "boolean"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}},
        "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}},
        "result": result or {},
    }
    if is_list:
        properties["result_info"] = {"$ref": "#/components/schemas/ResultInfo"}
    return {
        "type": "object",
        "required": ["success", "errors", "messages", "result"],
        "properties": properties,
    }


def _query_param(param: QueryParam) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": {"bool": "boolean", "int": "integer", "str": "string"}[param.kind]
    }
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    return {
        "name": param.name,
        "in": "query",
        "required": False,
        "description": param.description,
        "schema": schema,
    }


def _operation(spec: RouteSpec) -> dict[str, Any]:
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": _PATH_PARAM_DOC.get(name, name),
            "schema": {"type": "string"},
        }
        for name in _PLACEHOLDER.findall(spec.path)
    ]
    parameters += [_query_param(q) for q in spec.query]
    operation: dict[str, Any] = {
        "operationId": spec.handler,
        "summary": spec.summary,
        "tags": [spec.tag],
        "parameters": parameters,
        "responses": {
            str(spec.status): {
                "description": "Success (v4 envelope).",
                "content": {
                    "application/json": {
                        "schema": _envelope(
                            {"type": "array"} if spec.is_list else None, is_list=spec.is_list
                        )
                    }
                },
            },
            "default": {
                "description": "Failure: success=false and errors[].code from the error table.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Failure"}}
                },
            },
        },
    }
    if spec.auth == "none":
        operation["security"] = []
    elif spec.auth == "admin":
        operation["security"] = [{"adminToken": []}]
    if spec.body is not None:
        operation["requestBody"] = {
            "required": not spec.body_optional,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{spec.body.__name__}"}
                }
            },
        }
    return operation


def build_openapi(version: str = "0.1.0") -> dict[str, Any]:
    """The document served at ``/client/v4/openapi.json``."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
        },
        "ResultInfo": {
            "type": "object",
            "properties": {
                k: {"type": "integer"} for k in ("page", "per_page", "count", "total_count")
            },
        },
        "Failure": _envelope({"type": "null"}),
    }
    for spec in ROUTES:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec)
        if spec.body is not None:
            schemas[spec.body.__name__] = spec.body.model_json_schema()
    codes = "\n".join(
        f"* {int(code)} ({HTTP_STATUS[code]}): {code.name.lower()}" for code in ErrorCode
    )
    return {
        "openapi": "3.1.0",  # JSON Schema 2020-12, as pydantic emits
        "info": {
            "title": "Outlast reference control plane",
            "version": version,
            "description": "Named tunnels, DNS routes and audit logs in the v4 envelope style. "
            f"Error codes:\n{codes}",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiToken": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "User API token (from bootstrap; kept in cert.pem).",
                },
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Contents of DIR/admin.token.",
                },
            },
        },
    }
