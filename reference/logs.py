"""Structured JSON logs (one object per line on stderr), with secrets kept out."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Field names whose values are never written to a log, whatever the caller passes.
SECRET_FIELDS = frozenset(
    {
        "secret",
        "tunnel_secret",
        "TunnelSecret",
        "api_token",
        "apiToken",
        "token",
        "proof",
        "password",
        "authorization",
        "admin_token",
        "verifier",
    }
)


class JsonFormatter(logging.Formatter):
    """Formats records as JSON: time, level, component, message and ``extra={"fields": {...}}``."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(redact(fields))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def redact(fields: dict[str, Any]) -> dict[str, Any]:
    """Return ``fields`` with every secret-named value replaced by ``"[redacted]"``."""
    return {k: ("[redacted]" if k in SECRET_FIELDS else v) for k, v in fields.items()}


def configure_logging(component: str, level: str = "INFO") -> None:
    """Send JSON logs for ``component`` to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "hpack", "h2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_event(
    logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any
) -> None:
    """Log ``message`` with structured ``fields`` (secret-named fields are redacted)."""
    logger.log(level, message, extra={"fields": fields})
