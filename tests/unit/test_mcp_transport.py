"""``mobius_artifacts.mcp_transport``: finding the request in a line the SDK cannot
decode, answering it, replacing an answer that cannot be encoded, and the Host and
Origin values the HTTP transport accepts for the address it is bound to."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import types
from mcp.shared.message import SessionMessage
from mobius_artifacts.mcp_transport import (
    AnsweringReader,
    AnsweringWriter,
    envelope,
    transport_security,
)

DEEP = '{"a":[' * 3000 + "1" + "]}" * 3000


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"x":"\\ud800"}}',
            (True, True, 3),
        ),
        ('{"params":{"id":1,"method":"m"},"id":"r-1","method":"x"}', (True, True, "r-1")),
        ('{"jsonrpc":"2.0","method":"x","params":' + DEEP + "}", (True, False, None)),
        ('{"jsonrpc":"2.0","params":' + DEEP + ',"id":9,"method":"x"}', (True, True, 9)),
        ('{"jsonrpc":"2.0","id":4,"result":"\\ud800"}', (False, True, 4)),
        ('{"id":"\\ud800","method":"x"}', (True, True, None)),  # an id that is no text
        ('{"id":true,"method":"x"}', (True, True, None)),
        ('{"\\u0069d":5,"method":"x"}', (True, True, 5)),  # an escaped key
        ('{"jsonrpc":"2.0","id":"a\\"}b","method":"x"}', (True, True, 'a"}b')),
        ("[1,2]", (False, False, None)),
        ("garbage", (False, False, None)),
        ('{"id":5,"method":"x', (True, True, 5)),  # cut short
    ],
)
def test_envelope(line: str, expected: tuple[bool, bool, Any]) -> None:
    assert envelope(line) == expected


class Stream:
    """A stand-in for the SDK's memory streams."""

    def __init__(self, items: list[Any] | None = None) -> None:
        self.items = list(items or [])
        self.sent: list[SessionMessage] = []

    async def receive(self) -> Any:
        if not self.items:
            raise anyio.EndOfStream
        return self.items.pop(0)

    async def send(self, item: SessionMessage) -> None:
        self.sent.append(item)

    async def aclose(self) -> None:
        pass


def exception_of(line: str) -> Exception:
    try:
        types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except Exception as exc:
        return exc
    raise AssertionError(line)


def errors(stream: Stream) -> list[tuple[Any, int]]:
    found = []
    for item in stream.sent:
        assert isinstance(item.message, types.JSONRPCError)
        found.append((item.message.id, item.message.error.code))
    return found


async def test_the_reader_answers_requests_it_cannot_read_and_passes_the_rest() -> None:
    good = SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="x"))
    lines = [
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"a":"\\ud800"}}',
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"m":' + DEEP + "}}",
        '{"jsonrpc":"2.0","method":"notifications/x","params":{"a":"\\ud800"}}',  # no answer
        '{"jsonrpc":"2.0","id":3,"result":"\\ud800"}',  # a response: no answer
        '{"jsonrpc":"2.0","id":4,"method":5}',
        "not json",
    ]
    inner = Stream([exception_of(line) for line in lines] + [good])
    out = Stream()
    reader = AnsweringReader(inner, AnsweringWriter(out))
    received = [item async for item in reader]
    assert received == [good]
    assert errors(out) == [(1, -32700), (2, -32700), (4, -32600), (None, -32700)]
    first = out.sent[0].message
    assert isinstance(first, types.JSONRPCError) and "surrogate" in first.error.message


async def test_the_writer_replaces_an_answer_that_cannot_be_encoded() -> None:
    out = Stream()
    writer = AnsweringWriter(out)
    text = types.TextContent(text="caf\udce9")
    bad = types.JSONRPCResponse(jsonrpc="2.0", id=7, result={"content": [text.model_dump()]})
    await writer.send(SessionMessage(bad))
    await writer.send(SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="\ud800")))
    fine = SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=8, result={}))
    await writer.send(fine)
    first = out.sent[0].message
    assert isinstance(first, types.JSONRPCError)
    assert (first.id, first.error.code) == (7, -32603)
    assert out.sent[1:] == [fine]  # the notification that cannot be sent is dropped


@pytest.mark.parametrize(
    ("host", "own"),
    [
        ("127.0.0.2", "127.0.0.2"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "[::1]"),
        ("localhost", "localhost"),
    ],
)
def test_transport_security_names_the_bound_address(host: str, own: str) -> None:
    settings = transport_security(host, 8765)
    assert settings.enable_dns_rebinding_protection
    assert f"{own}:8765" in settings.allowed_hosts
    assert {"localhost:8765", "127.0.0.1:8765", "[::1]:8765"} <= set(settings.allowed_hosts)
    assert all(h.endswith(":8765") for h in settings.allowed_hosts)  # nothing else, no wildcard
    assert f"http://{own}:*" in settings.allowed_origins
    assert not any("evil" in o or o.startswith("https") for o in settings.allowed_origins)
    assert "127.0.0.2" in transport_security("127.0.0.2", 80).allowed_hosts
