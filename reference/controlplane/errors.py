"""The control plane's error codes (the table in docs/controlplane.md) and the error it raises."""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Codes in ``errors[].code`` of the v4 envelope; each maps to one HTTP status."""

    MALFORMED_JSON = 1000
    INVALID_FIELDS = 1001
    INVALID_NAME = 1002
    RECORD_EXISTS = 1003
    HOSTNAME_OUTSIDE_ZONE = 1004
    TUNNEL_NOT_FOUND = 1005
    TUNNEL_NAME_CONFLICT = 1006
    TUNNEL_HAS_CONNECTIONS = 1007
    TUNNEL_LIMIT_REACHED = 1008
    RECORD_NOT_FOUND = 1009
    TUNNEL_ALREADY_DELETED = 1011
    INVALID_IDENTIFIER = 1012
    BODY_TOO_LARGE = 1013
    ZONE_CONFLICT = 1014
    USER_NOT_FOUND = 1015
    ACCOUNT_NOT_FOUND = 1016
    INVALID_QUERY = 1017
    LEGACY_APEX = 1018
    TUNNEL_ALREADY_ACTIVE = 1019
    FOREIGN_TUNNEL_TARGET = 1020
    NO_ROUTE = 7000
    METHOD_NOT_ALLOWED = 7001
    FORBIDDEN = 10000
    MISSING_AUTH = 10001
    UNKNOWN_TOKEN = 10002
    TOKEN_ROLLED = 10003
    ADMIN_TOKEN_INVALID = 10004
    INTERNAL = 10500


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.INVALID_FIELDS: 400,
    ErrorCode.INVALID_NAME: 400,
    ErrorCode.RECORD_EXISTS: 409,
    ErrorCode.HOSTNAME_OUTSIDE_ZONE: 400,
    ErrorCode.TUNNEL_NOT_FOUND: 404,
    ErrorCode.TUNNEL_NAME_CONFLICT: 409,
    ErrorCode.TUNNEL_HAS_CONNECTIONS: 409,
    ErrorCode.TUNNEL_LIMIT_REACHED: 403,
    ErrorCode.RECORD_NOT_FOUND: 404,
    ErrorCode.TUNNEL_ALREADY_DELETED: 409,
    ErrorCode.INVALID_IDENTIFIER: 400,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.ZONE_CONFLICT: 409,
    ErrorCode.USER_NOT_FOUND: 404,
    ErrorCode.ACCOUNT_NOT_FOUND: 404,
    ErrorCode.INVALID_QUERY: 400,
    ErrorCode.LEGACY_APEX: 400,
    ErrorCode.TUNNEL_ALREADY_ACTIVE: 409,
    ErrorCode.FOREIGN_TUNNEL_TARGET: 403,
    ErrorCode.NO_ROUTE: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.MISSING_AUTH: 401,
    ErrorCode.UNKNOWN_TOKEN: 401,
    ErrorCode.TOKEN_ROLLED: 401,
    ErrorCode.ADMIN_TOKEN_INVALID: 401,
    ErrorCode.INTERNAL: 500,
}


class ApiProblem(Exception):
    """An error answered to the client as a v4 envelope with ``success: false``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return HTTP_STATUS[self.code]
