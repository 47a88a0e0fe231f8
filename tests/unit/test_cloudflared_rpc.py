"""The edge's Cap'n Proto RegistrationServer core, driven with messages a client would send."""

from __future__ import annotations

import struct
import uuid
from typing import Any

import pytest

from reference.cloudflared.rpc import (
    REGISTRATION_SERVER_ID,
    LocalConfigurationPushed,
    RegisterConnection,
    RegistrationRpc,
    RpcError,
    UnregisterConnection,
    schemas,
    split_message,
)

TUNNEL = uuid.uuid4()
CLIENT = uuid.uuid4()


def bootstrap(question_id: int = 0) -> bytes:
    message = schemas().rpc.Message.new_message()
    message.init("bootstrap").questionId = question_id
    return bytes(message.to_bytes())


def call(question_id: int, method: int, *, promised: int | None = 0, **params: Any) -> bytes:
    message = schemas().rpc.Message.new_message()
    body = message.init("call")
    body.questionId = question_id
    body.interfaceId = REGISTRATION_SERVER_ID
    body.methodId = method
    if promised is None:
        body.target.importedCap = 0
    else:
        body.target.init("promisedAnswer").questionId = promised
    names = ["registerConnection", "unregisterConnection", "updateLocalConfiguration"]
    kind = schemas().tunnel.RegistrationServer.schema.methods[names[method]].param_type
    content = body.init("params").content.as_struct(kind)
    if method == 0:
        content.auth.accountTag = params.get("account", "acct")
        content.auth.tunnelSecret = params.get("secret", b"s" * 32)
        content.tunnelId = TUNNEL.bytes
        content.connIndex = 2
        content.options.client.clientId = CLIENT.bytes
        content.options.client.version = "2026.8.2"
        content.options.client.arch = "linux_amd64"
        content.options.numPreviousAttempts = 1
    elif method == 2:
        content.config = b'{"ingress":[]}'
    return bytes(message.to_bytes())


def returns(data: bytes) -> list[Any]:
    out = []
    while data:
        length = split_message(data)
        assert length is not None
        with schemas().rpc.Message.from_bytes(data[:length]) as message:
            out.append(
                (
                    message.which(),
                    message.to_dict() if message.which() != "return" else None,
                    data[:length],
                )
            )
        data = data[length:]
    return out


def test_bootstrap_answers_a_capability_pointer() -> None:
    core = RegistrationRpc()
    assert core.receive(bootstrap(7)) == []
    out = core.data_to_send()
    with schemas().rpc.Message.from_bytes(out) as message:
        answer = message.__getattr__("return")
        assert answer.answerId == 7
        assert answer.results.capTable[0].senderHosted == 0
    # Payload.content is word 6 of this message's only segment: a capability pointer, index 0.
    (word,) = struct.unpack_from("<Q", out, 8 + 8 * 6)
    assert word == 3


def test_register_call_becomes_an_event_and_its_answer_a_return() -> None:
    core = RegistrationRpc()
    frames = bootstrap(0) + call(1, 0)
    events = core.receive(frames[:5]) + core.receive(frames[5:])
    core.data_to_send()
    assert len(events) == 1 and isinstance(events[0], RegisterConnection)
    event = events[0]
    assert (event.tunnel_id, event.client_id, event.conn_index) == (str(TUNNEL), str(CLIENT), 2)
    assert (event.account_tag, event.tunnel_secret, event.arch) == (
        "acct",
        b"s" * 32,
        "linux_amd64",
    )
    assert event.num_previous_attempts == 1
    connection = str(uuid.uuid4())
    core.answer_register(1, connection_id=connection, location="ams")
    result_type = (
        schemas().tunnel.RegistrationServer.schema.methods["registerConnection"].result_type
    )
    with schemas().rpc.Message.from_bytes(core.data_to_send()) as message:
        answer = message.__getattr__("return")
        details = answer.results.content.as_struct(result_type).result.result.connectionDetails
        assert uuid.UUID(bytes=bytes(details.uuid)) == uuid.UUID(connection)
        assert details.locationName == "ams"


def test_refusal_carries_cause_retry_and_permanence() -> None:
    core = RegistrationRpc()
    core.receive(bootstrap(0) + call(1, 0, promised=None))
    core.data_to_send()
    core.answer_register(1, cause="Unauthorized: x", should_retry=False, retry_after=2.5)
    result_type = (
        schemas().tunnel.RegistrationServer.schema.methods["registerConnection"].result_type
    )
    with schemas().rpc.Message.from_bytes(core.data_to_send()) as message:
        error = (
            message.__getattr__("return").results.content.as_struct(result_type).result.result.error
        )
        assert (error.cause, error.shouldRetry, error.retryAfter) == (
            "Unauthorized: x",
            False,
            2_500_000_000,
        )


def test_unregister_and_configuration_are_answered_at_once() -> None:
    core = RegistrationRpc()
    events = core.receive(bootstrap(0) + call(1, 2) + call(2, 1))
    assert events == [LocalConfigurationPushed(b'{"ingress":[]}'), UnregisterConnection()]
    kinds = [kind for kind, _, _ in returns(core.data_to_send())]
    assert kinds == ["return", "return", "return"]


def test_unknown_capability_gets_an_exception_and_garbage_is_an_error() -> None:
    core = RegistrationRpc()
    core.receive(call(1, 0, promised=9))
    with schemas().rpc.Message.from_bytes(core.data_to_send()) as message:
        assert message.__getattr__("return").which() == "exception"
    with pytest.raises(RpcError):
        RegistrationRpc().receive(b"\xff\xff\xff\xff" + b"\x00" * 64)
