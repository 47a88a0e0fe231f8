"""Sans-I/O Cap'n Proto RPC (level 0), server side: the edge's ``RegistrationServer``.

cloudflared (the RPC client) bootstraps one capability on the control stream and calls
``registerConnection``, ``updateLocalConfiguration`` and, when it drains,
``unregisterConnection`` on it. This core takes the stream's bytes (``receive``), returns
:class:`RpcEvent`s, and queues answers for ``data_to_send()``. pycapnp is used only to encode and
decode messages (``rpc.capnp`` shipped with it, ``tunnelrpc.capnp`` beside this file); it runs no
event loop of its own.

Supported: Bootstrap, Call (target: the bootstrap's promised answer or the exported capability),
Finish, Release, Abort. Anything else is answered ``unimplemented``, as the protocol asks.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import capnp

#: ``RegistrationServer``'s interface ID and method ordinals (published interface).
REGISTRATION_SERVER_ID = 0xF71695EC7FE85497
METHOD_REGISTER = 0
METHOD_UNREGISTER = 1
METHOD_UPDATE_LOCAL_CONFIGURATION = 2

#: Largest RPC message accepted (a registration is well under 1 KiB).
MAX_MESSAGE = 1024 * 1024
_EXPORT_ID = 0


class RpcError(Exception):
    """The peer broke the RPC protocol; close the connection."""


@dataclass(frozen=True)
class Schemas:
    rpc: Any
    tunnel: Any


@cache
def schemas() -> Schemas:
    """Load ``rpc.capnp`` (from pycapnp) and ``tunnelrpc.capnp`` once."""
    package = Path(capnp.__file__).parent
    rpc = capnp.load(str(package / "rpc.capnp"), imports=[str(package.parent)])
    tunnel = capnp.load(str(Path(__file__).with_name("tunnelrpc.capnp")))
    return Schemas(rpc, tunnel)


def _method(name: str) -> Any:
    return schemas().tunnel.RegistrationServer.schema.methods[name]


# ---- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RpcEvent:
    """Something the RPC peer asked for."""


@dataclass(frozen=True)
class RegisterConnection(RpcEvent):
    """``registerConnection``: answer with :meth:`RegistrationRpc.answer_register`."""

    question_id: int
    account_tag: str
    tunnel_secret: bytes = field(repr=False)
    tunnel_id: str  # canonical UUID text, or the raw bytes' hex when not 16 bytes
    conn_index: int
    client_id: str
    version: str
    arch: str
    features: tuple[str, ...]
    num_previous_attempts: int
    origin_local_ip: bytes


@dataclass(frozen=True)
class UnregisterConnection(RpcEvent):
    """``unregisterConnection`` (already answered): open no new streams."""


@dataclass(frozen=True)
class LocalConfigurationPushed(RpcEvent):
    """``updateLocalConfiguration`` (already answered): cloudflared's ingress config (JSON)."""

    config: bytes


@dataclass(frozen=True)
class RpcAborted(RpcEvent):
    """The peer sent Abort."""

    reason: str


def _uuid_text(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw)) if len(raw) == 16 else raw.hex()


# ---- framing ---------------------------------------------------------------------------------


def split_message(buffer: bytes | bytearray) -> int | None:
    """Length of the first complete framed message in ``buffer`` (None: need more bytes)."""
    if len(buffer) < 4:
        return None
    (count_minus_one,) = struct.unpack_from("<I", buffer, 0)
    count = count_minus_one + 1
    if count > 512:
        raise RpcError(f"message with {count} segments")
    header = 4 + 4 * count
    header += header % 8
    if len(buffer) < header:
        return None
    words = sum(struct.unpack_from(f"<{count}I", buffer, 4))
    total = header + 8 * words
    if total > MAX_MESSAGE:
        raise RpcError(f"message of {total} bytes exceeds {MAX_MESSAGE}")
    return total if len(buffer) >= total else None


def _set_capability_pointer(frame: bytes, path: tuple[int, ...], cap_index: int) -> bytes:
    """Overwrite the (null) pointer reached by ``path`` (pointer indexes from the root struct)
    with a capability pointer. pycapnp cannot set a capability without its RPC runtime."""
    (count_minus_one,) = struct.unpack_from("<I", frame, 0)
    if count_minus_one != 0:
        raise RpcError("internal: expected a single-segment message")
    base = 8  # one segment: 4 bytes count + 4 bytes size
    data = bytearray(frame)
    word = 0  # the root pointer
    for index in path:
        (value,) = struct.unpack_from("<Q", data, base + 8 * word)
        if value & 3 != 0:
            raise RpcError("internal: not a struct pointer")
        offset = (value & 0xFFFFFFFF) >> 2
        if offset & (1 << 29):
            offset -= 1 << 30
        data_words = (value >> 32) & 0xFFFF
        pointers = value >> 48
        if index >= pointers:
            raise RpcError("internal: pointer index out of range")
        word = word + 1 + offset + data_words + index
    struct.pack_into("<Q", data, base + 8 * word, 3 | (cap_index << 32))
    return bytes(data)


# ---- the server core -------------------------------------------------------------------------


class RegistrationRpc:
    """One control stream's RPC state (server side)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._out = bytearray()
        self._bootstrap_questions: set[int] = set()
        self._answered: set[int] = set()
        self._pending_register: int | None = None

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive(self, data: bytes) -> list[RpcEvent]:
        """Feed control-stream bytes; raises RpcError on a broken stream."""
        self._buffer += data
        events: list[RpcEvent] = []
        while (length := split_message(self._buffer)) is not None:
            frame = bytes(self._buffer[:length])
            del self._buffer[:length]
            try:
                with schemas().rpc.Message.from_bytes(frame) as message:
                    events.extend(self._on_message(message, frame))
            except capnp.KjException as exc:
                raise RpcError(f"undecodable RPC message: {exc.description}") from None
        return events

    # -- answers --

    def answer_register(
        self,
        question_id: int,
        *,
        connection_id: str | None = None,
        location: str = "",
        cause: str = "",
        should_retry: bool = True,
        retry_after: float | None = None,
    ) -> None:
        """Answer ``registerConnection``: details when ``connection_id`` is given, else the
        error (``retry_after`` in seconds; sent in nanoseconds)."""
        if self._pending_register != question_id:
            raise RuntimeError(f"no registerConnection {question_id} to answer")
        self._pending_register = None
        message, results = self._new_return(question_id)
        body = results.content.as_struct(_method("registerConnection").result_type)
        outcome = body.init("result").result
        if connection_id is not None:
            details = outcome.init("connectionDetails")
            details.uuid = uuid.UUID(connection_id).bytes
            details.locationName = location
            details.tunnelIsRemotelyManaged = False
        else:
            error = outcome.init("error")
            error.cause = cause
            error.retryAfter = round((retry_after or 0.0) * 1e9)
            error.shouldRetry = should_retry
        self._out += message.to_bytes()

    def _answer_empty(self, question_id: int, method: str) -> None:
        message, results = self._new_return(question_id)
        results.content.as_struct(_method(method).result_type)
        self._out += message.to_bytes()

    def _answer_exception(self, question_id: int, reason: str, kind: str = "failed") -> None:
        message = schemas().rpc.Message.new_message()
        answer = message.init("return")
        answer.answerId = question_id
        exception = answer.init("exception")
        exception.reason = reason
        exception.type = kind
        self._out += message.to_bytes()

    def _new_return(self, question_id: int) -> tuple[Any, Any]:
        message = schemas().rpc.Message.new_message()
        answer = message.init("return")
        answer.answerId = question_id
        return message, answer.init("results")

    # -- incoming --

    def _on_message(self, message: Any, frame: bytes) -> list[RpcEvent]:
        kind = message.which()
        if kind == "bootstrap":
            self._on_bootstrap(message.bootstrap.questionId)
            return []
        if kind == "call":
            return self._on_call(message.call)
        if kind in ("finish", "release"):
            return []
        if kind == "abort":
            return [RpcAborted(str(message.abort.reason))]
        if kind == "unimplemented":
            return []
        reply = schemas().rpc.Message.new_message()
        reply.unimplemented = message
        self._out += reply.to_bytes()
        return []

    def _on_bootstrap(self, question_id: int) -> None:
        self._bootstrap_questions.add(question_id)
        message, results = self._new_return(question_id)
        table = results.init("capTable", 1)
        table[0].senderHosted = _EXPORT_ID
        # Message.return (pointer 0) -> Return.results (pointer 0) -> Payload.content (pointer 0)
        self._out += _set_capability_pointer(message.to_bytes(), (0, 0, 0), 0)

    def _on_call(self, call: Any) -> list[RpcEvent]:
        question_id = int(call.questionId)
        target = call.target
        if target.which() == "importedCap":
            known = target.importedCap == _EXPORT_ID
        else:
            promised = target.promisedAnswer
            known = promised.questionId in self._bootstrap_questions and not len(promised.transform)
        if not known:
            self._answer_exception(question_id, "call to an unknown capability")
            return []
        if call.interfaceId != REGISTRATION_SERVER_ID:
            self._answer_exception(
                question_id, f"interface {call.interfaceId:#x} not served here", "unimplemented"
            )
            return []
        method = call.methodId
        if method == METHOD_REGISTER:
            if self._pending_register is not None:
                self._answer_exception(question_id, "a registration is already in progress")
                return []
            params = call.params.content.as_struct(_method("registerConnection").param_type)
            self._pending_register = question_id
            options = params.options
            client = options.client
            return [
                RegisterConnection(
                    question_id=question_id,
                    account_tag=str(params.auth.accountTag),
                    tunnel_secret=bytes(params.auth.tunnelSecret),
                    tunnel_id=_uuid_text(bytes(params.tunnelId)),
                    conn_index=int(params.connIndex),
                    client_id=_uuid_text(bytes(client.clientId)),
                    version=str(client.version),
                    arch=str(client.arch),
                    features=tuple(str(f) for f in client.features),
                    num_previous_attempts=int(options.numPreviousAttempts),
                    origin_local_ip=bytes(options.originLocalIp),
                )
            ]
        if method == METHOD_UNREGISTER:
            self._answer_empty(question_id, "unregisterConnection")
            return [UnregisterConnection()]
        if method == METHOD_UPDATE_LOCAL_CONFIGURATION:
            params = call.params.content.as_struct(_method("updateLocalConfiguration").param_type)
            self._answer_empty(question_id, "updateLocalConfiguration")
            return [LocalConfigurationPushed(bytes(params.config))]
        self._answer_exception(question_id, f"method {method} not served here", "unimplemented")
        return []
