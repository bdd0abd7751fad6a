"""HTTP/1.1 request heads: the pure parser, and the same rules over a real socket."""

from __future__ import annotations

import pytest

from conftest import raw_request, status_of


# -- over a real socket ---------------------------------------------------------


def _post(server, extra: bytes = b"", line: bytes = b"POST /mcp HTTP/1.1") -> bytes:
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    return (line + b"\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % (server.port, server.token.encode(), len(body))
            + extra + b"Connection: close\r\n\r\n" + body)


@pytest.mark.parametrize(
    "extra, line, status",
    [
        (b"", b"POST /mcp HTTP/1.1", 200),
        (b"X-Pad: 1\r\n" * 90, b"POST /mcp HTTP/1.1", 200),
        (b"X-Pad: 1\r\n" * 101, b"POST /mcp HTTP/1.1", 431),
        (b"X-Long: " + b"a" * 70000 + b"\r\n", b"POST /mcp HTTP/1.1", 431),
        (b"", b"POST /" + b"a" * 70000 + b" HTTP/1.1", 414),
        (b"", b"POST /mcp HTTP/2.0", 505),
        (b"Transfer-Encoding : chunked\r\n", b"POST /mcp HTTP/1.1", 400),
        (b"X-A: 1\r\n folded\r\n", b"POST /mcp HTTP/1.1", 400),
        (b"Host: 127.0.0.1:1\r\n", b"POST /mcp HTTP/1.1", 400),
    ],
)
def test_head_rules_over_a_socket(server, extra, line, status):
    answer = raw_request(server.port, _post(server, extra, line))
    assert status_of(answer) == status
    assert b"Content-Length: " in answer
    # and the server still serves
    assert status_of(raw_request(server.port, _post(server))) == 200


def test_a_stray_crlf_before_a_request_is_ignored(server):
    assert status_of(raw_request(server.port, b"\r\n" + _post(server))) == 200


def test_a_client_that_leaves_mid_head_gets_no_answer(server):
    answer = raw_request(server.port, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert answer == b""
    assert status_of(raw_request(server.port, _post(server))) == 200


def _chunked(server, coding: bytes, chunks: bytes) -> bytes:
    return (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: %s\r\nConnection: close\r\n\r\n"
            % (server.port, server.token.encode(), coding) + chunks)


PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


@pytest.mark.parametrize(
    "coding, chunks, status",
    [
        (b"chunked", b"%x\r\n%s\r\n0\r\n\r\n" % (len(PING), PING), 200),
        (b"Chunked", b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(PING), PING), 200),
        (b"gzip, chunked", b"%x\r\n%s\r\n0\r\n\r\n" % (len(PING), PING), 501),
        (b"identity", PING, 400),  # chunked must come last (RFC 9112 6.3 rule 4)
        (b"chunked, identity", PING, 400),
        (b"chunked", b"%x\r\n%s\r\n0\r\n" % (len(PING), PING) + b"X-T: 1\r\n" * 200 + b"\r\n", 431),
    ],
)
def test_transfer_codings(server, coding, chunks, status):
    assert status_of(raw_request(server.port, _chunked(server, coding, chunks))) == status
