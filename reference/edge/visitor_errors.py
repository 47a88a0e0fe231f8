"""The edge's own visitor error responses (JSON bodies with a stable ``error_code``).

See the table in docs/edge.md. Every response of the edge, error or not, carries ``X-Outlast-Pop``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

POP_HEADER = "X-Outlast-Pop"
CONNECTION_HEADER = "X-Outlast-Connection"
#: The PoP whose tunnel connection carried the request (differs from ``X-Outlast-Pop``, the PoP
#: the visitor reached, when that PoP forwarded the request to a peer).
TUNNEL_POP_HEADER = "X-Outlast-Tunnel-Pop"
#: The tunnel whose connection carried the response (what a visitor's hostname was routed to).
TUNNEL_ID_HEADER = "X-Outlast-Tunnel-Id"


@dataclass(frozen=True)
class VisitorError:
    """One kind of edge-generated error."""

    status: int
    error_code: int


#: No live DNS record for the Host (or the Host is in no zone this edge knows).
NO_SUCH_HOSTNAME = VisitorError(404, 1001)
#: The hostname has a record, but it does not point at a tunnel.
NOT_A_TUNNEL_ROUTE = VisitorError(404, 1002)
#: The record points at a tunnel this edge does not know (yet) or that was deleted.
TUNNEL_NOT_FOUND = VisitorError(530, 1016)
#: The tunnel exists but has no registered connection at this PoP.
NO_ACTIVE_CONNECTION = VisitorError(530, 1033)
#: Every connection tried failed before the origin's response started.
TUNNEL_CONNECTION_FAILED = VisitorError(502, 1035)
#: The connector did not start a response within the response timeout.
RESPONSE_TIMEOUT = VisitorError(524, 1036)
#: cloudflared answered itself: it could not reach the origin service (response meta
#: ``src: cloudflared``).
ORIGIN_UNREACHABLE = VisitorError(502, 1037)
#: cloudflared refused the request: too many active flows (``flow_rate_limited``).
ORIGIN_FLOW_LIMITED = VisitorError(530, 1038)
#: The request has no Host header.
MISSING_HOST = VisitorError(400, 1000)


def error_response(kind: VisitorError, message: str, pop: str) -> web.Response:
    """The JSON error response ``{"error_code": N, "error": message, "pop": pop}``."""
    return web.json_response(
        {"error_code": kind.error_code, "error": message, "pop": pop},
        status=kind.status,
        headers={POP_HEADER: pop},
    )
