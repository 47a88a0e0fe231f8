"""API errors with Toxiproxy's status codes and messages (answered as ``{"error", "status"}``)."""

from __future__ import annotations


class ApiError(Exception):
    """An error the API reports to its caller with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def to_json(self) -> dict[str, object]:
        """The body Toxiproxy sends for this error."""
        return {"error": self.message, "status": self.status}


def bad_request_body(detail: str) -> ApiError:
    """400 ``bad request body: <detail>``."""
    return ApiError(400, f"bad request body: {detail}")


def missing_field(detail: str) -> ApiError:
    """400 ``missing required field: <detail>``."""
    return ApiError(400, f"missing required field: {detail}")


def proxy_not_found() -> ApiError:
    return ApiError(404, "proxy not found")


def proxy_already_exists() -> ApiError:
    return ApiError(409, "proxy already exists")


def invalid_stream() -> ApiError:
    return ApiError(400, "stream was invalid, can be either upstream or downstream")


def invalid_toxic_type() -> ApiError:
    return ApiError(400, "invalid toxic type")


def toxic_already_exists() -> ApiError:
    return ApiError(409, "toxic already exists")


def toxic_not_found() -> ApiError:
    return ApiError(404, "toxic not found")
