"""Request bodies, names, hostnames and identifiers: parsed strictly, refused clearly."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reference.controlplane.errors import ApiProblem, ErrorCode

MAX_TUNNEL_NAME = 64
MIN_SECRET_BYTES = 32
MAX_SECRET_BYTES = 1024
MAX_JSON_DEPTH = 32
_TUNNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


class StrictBody(BaseModel):
    """Base of every request body: unknown fields and type coercion are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CreateTunnelBody(StrictBody):
    name: str = Field(description="1-64 characters: letters, digits, '.', '_', '-'; not a UUID.")
    tunnel_secret: str = Field(description="Base64 of at least 32 random bytes.")


class RouteBody(StrictBody):
    type: Literal["dns"] = Field(description="Only DNS routes are supported.")
    user_hostname: str = Field(description="Hostname in the zone (the apex is allowed).")
    overwrite_existing: bool = Field(
        default=False, description="Replace an existing A, AAAA or CNAME record at the name."
    )


class CreateDnsRecordBody(StrictBody):
    type: Literal["A", "AAAA", "CNAME", "TXT"]
    name: str = Field(description="Fully qualified name in the zone, or '@' for the apex.")
    content: str
    proxied: bool = False
    ttl: int = Field(default=1, description="1 (automatic) or 60-86400 seconds.")


class OriginCertificateBody(StrictBody):
    requested_validity: int = Field(default=825, ge=1, le=5475, description="Days.")


class BootstrapBody(StrictBody):
    account: str = Field(description="Account name (created if new).")
    zone: str = Field(description="Zone name, e.g. example.com (created if new).")
    email: str = Field(
        description="User email (created if new; an existing user gets a new token)."
    )


class RollTokenBody(StrictBody):
    email: str


class RemoveMemberBody(StrictBody):
    account: str = Field(description="Account name.")
    email: str


Body = TypeVar("Body", bound=StrictBody)


def json_depth(value: object) -> int:
    """How deeply ``value`` nests lists and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in node)
    return deepest


def parse_json(raw: bytes) -> object:
    """Decode a request body; ApiProblem MALFORMED_JSON names where it breaks, or says it
    nests deeper than :data:`MAX_JSON_DEPTH` (no body the API takes nests more than 2)."""
    if not raw.strip():
        raise ApiProblem(ErrorCode.MALFORMED_JSON, "request body is empty; send a JSON object")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise ApiProblem(ErrorCode.MALFORMED_JSON, "request body is not UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ApiProblem(
            ErrorCode.MALFORMED_JSON,
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except RecursionError:
        data, depth = None, MAX_JSON_DEPTH + 1  # far too deep for the parser itself
    else:
        depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise ApiProblem(
            ErrorCode.MALFORMED_JSON,
            f"request body nests deeper than {MAX_JSON_DEPTH} levels of lists and objects",
        )
    return data


def parse_body(model: type[Body], data: object) -> Body:
    """Validate ``data`` against ``model``; ApiProblem INVALID_FIELDS lists every problem."""
    if not isinstance(data, dict):
        raise ApiProblem(
            ErrorCode.INVALID_FIELDS,
            f"request body must be a JSON object, got {type(data).__name__}",
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "body"
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown field '{where}'")
            elif error["type"] == "missing":
                problems.append(f"missing required field '{where}'")
            else:
                problems.append(f"field '{where}': {error['msg']}")
        accepted = ", ".join(model.model_fields)
        raise ApiProblem(
            ErrorCode.INVALID_FIELDS, "; ".join(problems) + f" (fields accepted: {accepted})"
        ) from None


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def tunnel_name(name: str) -> str:
    """A valid tunnel name, or ApiProblem INVALID_NAME saying what is wrong."""
    if not name:
        raise ApiProblem(ErrorCode.INVALID_NAME, "tunnel name is empty")
    if len(name) > MAX_TUNNEL_NAME:
        raise ApiProblem(
            ErrorCode.INVALID_NAME,
            f"tunnel name is {len(name)} characters long; at most {MAX_TUNNEL_NAME} are allowed",
        )
    if not _TUNNEL_NAME.match(name):
        raise ApiProblem(
            ErrorCode.INVALID_NAME,
            f"tunnel name {name!r} may only contain letters, digits, '.', '_' and '-', and must "
            "start with a letter or digit",
        )
    if is_uuid(name):
        raise ApiProblem(
            ErrorCode.INVALID_NAME, "tunnel name may not be a UUID (UUIDs identify tunnels)"
        )
    return name


def tunnel_secret(value: str) -> bytes:
    """Decode the base64 tunnel secret (at least 32 bytes)."""
    try:
        secret = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiProblem(ErrorCode.INVALID_FIELDS, "tunnel_secret is not valid base64") from None
    if not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
        raise ApiProblem(
            ErrorCode.INVALID_FIELDS,
            f"tunnel_secret decodes to {len(secret)} bytes; between {MIN_SECRET_BYTES} and "
            f"{MAX_SECRET_BYTES} are required",
        )
    return secret


def hostname(value: str, *, what: str = "hostname") -> str:
    """Lower-cased hostname without a trailing dot, or ApiProblem INVALID_NAME."""
    name = value.strip().lower().rstrip(".")
    if not name:
        raise ApiProblem(ErrorCode.INVALID_NAME, f"{what} is empty")
    if len(name) > 253:
        raise ApiProblem(ErrorCode.INVALID_NAME, f"{what} is longer than 253 characters")
    labels = name.split(".")
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and len(labels) > 1:
            continue
        if not _LABEL.match(label):
            raise ApiProblem(
                ErrorCode.INVALID_NAME,
                f"{what} {value!r} is not a valid DNS name (label {label!r}: 1-63 letters, "
                "digits or '-', not starting or ending with '-')",
            )
    return name


def zone_name(value: str) -> str:
    name = hostname(value, what="zone name")
    if "." not in name or name.startswith("*"):
        raise ApiProblem(
            ErrorCode.INVALID_NAME, f"zone name {value!r} must be a domain like example.com"
        )
    return name


def email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ApiProblem(ErrorCode.INVALID_FIELDS, f"{value!r} is not an email address")
    return value.lower()


def account_name(value: str) -> str:
    if not 1 <= len(value) <= 64 or not value.isprintable():
        raise ApiProblem(ErrorCode.INVALID_NAME, "account name must be 1-64 printable characters")
    return value


def hex_id(value: str, what: str) -> str:
    """A 32-hex identifier (account, zone, record, user), or ApiProblem INVALID_IDENTIFIER."""
    if not _HEX32.match(value):
        raise ApiProblem(
            ErrorCode.INVALID_IDENTIFIER, f"{value!r} is not a valid {what} id (32 hex digits)"
        )
    return value


def tunnel_id(value: str) -> str:
    if not is_uuid(value):
        raise ApiProblem(
            ErrorCode.INVALID_IDENTIFIER, f"{value!r} is not a valid tunnel id (a UUID)"
        )
    return value.lower()


def record_content(type: str, content: str) -> str:
    """Check ``content`` fits the record ``type``."""
    try:
        if type == "A":
            return str(ipaddress.IPv4Address(content))
        if type == "AAAA":
            return str(ipaddress.IPv6Address(content))
    except ValueError:
        raise ApiProblem(
            ErrorCode.INVALID_FIELDS, f"content {content!r} is not a valid {type} address"
        ) from None
    if type == "CNAME":
        return hostname(content, what="CNAME target")
    if len(content) > 2048:
        raise ApiProblem(ErrorCode.INVALID_FIELDS, "TXT content is longer than 2048 characters")
    return content


def ttl(value: int) -> int:
    if value != 1 and not 60 <= value <= 86400:
        raise ApiProblem(
            ErrorCode.INVALID_FIELDS, f"ttl {value} must be 1 (automatic) or 60-86400 seconds"
        )
    return value


def since_timestamp(value: str | None) -> str | None:
    """An ISO 8601 ``since`` query (UTC unless it says otherwise) in the audit log's own
    ``YYYY-MM-DDTHH:MM:SS.mmmZ`` form, so that it compares correctly; INVALID_QUERY if it is
    not a date."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiProblem(
            ErrorCode.INVALID_QUERY,
            f'since="{value[:64]}" is not an ISO 8601 time (e.g. 2026-04-15T15:31:00Z)',
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
