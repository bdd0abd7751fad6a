"""LoopbackServer, Settings and TokenStore as objects: their own contracts, over real sockets."""

from __future__ import annotations

import logging
import socket

import pytest

import loopback
from conftest import Client, make_registry, port_accepts
from loopback.auth import TokenStore, new_token
from loopback.server import LoopbackServer, StartError
from loopback.settings import Settings


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_body_bytes", 0), ("max_body_bytes", True), ("max_body_bytes", 1.5),
        ("body_timeout", 0), ("body_timeout", float("inf")), ("body_timeout", "30"),
        ("idle_timeout", -1), ("close_timeout", float("nan")), ("close_timeout", False),
        ("page_size", 0), ("page_size", True),
        ("allowed_origins", "https://a.example"), ("allowed_origins", ("a.example",)),
        ("allowed_origins", ("https://a.example/",)), ("allowed_origins", (1,)),
        ("server_name", ""), ("server_name", 3), ("instructions", 5),
    ],
)
def test_settings_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        Settings(**{field: value})


def test_settings_defaults_and_replace():
    settings = Settings()
    assert (settings.max_body_bytes, settings.body_timeout, settings.idle_timeout) == (1024 * 1024, 30.0, 120.0)
    changed = settings.replace(page_size=5, allowed_origins=["HTTPS://App.Example"])
    assert changed.page_size == 5 and changed.allowed_origins == ("https://app.example",)
    assert settings.page_size == 200  # immutable: the original is untouched
    with pytest.raises(ValueError):
        settings.replace(page_size=-1)
    with pytest.raises(Exception):
        settings.page_size = 1  # type: ignore[misc]


def test_tokens_are_fresh_256_bit_and_checked_exactly():
    store = TokenStore()
    grant = store.issue()
    assert len(grant.token) == 43 and grant.token != new_token()
    assert store.check(grant.token.encode()) == grant
    assert store.check(grant.token[:-1].encode()) is None
    assert store.check(grant.token.encode() + b"x") is None
    assert store.check(b"") is None
    assert grant.token not in repr(grant)


@pytest.mark.parametrize("token", ["short", "x" * 31, "has space " * 4, "\u00e9" * 40, "tab\t" * 10])
def test_an_adopted_token_must_be_long_printable_ascii(token):
    with pytest.raises(ValueError):
        TokenStore().issue(token=token)


def test_a_second_token_works_and_a_revoked_one_is_refused(server):
    extra = server.tokens.issue(scope="agent-run")
    assert set(server.runtime().tokens) == {server.token, extra.token}
    client = Client(server.port, extra.token)
    try:
        assert client.call_tool("add", {"a": 1})["result"]["content"][0]["text"] == "3"
        assert server.tokens.revoke(extra.token) is True
        assert server.tokens.revoke(extra.token) is False
        status, headers, _ = client.post({"jsonrpc": "2.0", "id": 9, "method": "ping"})
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    finally:
        client.close()
    owner = Client(server.port, server.token)
    try:
        assert owner.rpc("ping")["result"] == {}
    finally:
        owner.close()


def test_an_explicit_token_is_used():
    token = new_token()
    server = loopback.start(0, registry=make_registry(), token=token)
    try:
        assert server.token == token == loopback.active_runtime().token
        assert loopback.active_runtime().authorization == f"Bearer {token}"
    finally:
        server.close()


@pytest.mark.parametrize("port", [-1, 65536, True, "80", 1.0])
def test_bad_ports_are_refused_before_binding(port):
    with pytest.raises(ValueError, match="port"):
        LoopbackServer(port)


def test_start_twice_and_start_after_close_are_errors():
    server = LoopbackServer(0, registry=make_registry())
    assert repr(server).endswith("bound>") and not server.serving
    server.start()
    assert repr(server).endswith("serving>") and server.serving
    with pytest.raises(StartError, match="already serving"):
        server.start()
    server.close()
    assert repr(server).endswith("closed>") and not server.serving
    with pytest.raises(StartError, match="closed"):
        server.start()


def test_a_bound_server_that_never_served_closes():
    server = LoopbackServer(0)
    port = server.port
    assert port_accepts(port)  # listening from construction on (the backlog queues)
    server.close()
    assert server.closed and not port_accepts(port)


def test_context_manager_serves_then_closes():
    with LoopbackServer(0, registry=make_registry()) as server:
        client = Client(server.port, server.token)
        try:
            assert client.rpc("ping")["result"] == {}
        finally:
            client.close()
    assert server.closed and not port_accepts(server.port)


def test_an_on_close_callback_that_raises_is_logged_not_raised(caplog):
    server = LoopbackServer(0).start()
    seen = []
    server.on_close(lambda s: seen.append(s))
    server.on_close(lambda s: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="loopback"):
        server.close()
    assert seen == [server]
    assert "on_close callback failed" in caplog.text


def test_authentication_off_is_an_explicit_opt_in_that_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="loopback"):
        server = LoopbackServer(0, registry=make_registry(), settings=Settings(auth=False)).start()
    try:
        assert "authentication is switched off" in caplog.text
        assert server.token == "" and server.runtime().tokens == ()
        client = Client(server.port, None)
        try:
            assert client.call_tool("echo", {"text": "open"})["result"]["content"][0]["text"] == "open"
        finally:
            client.close()
    finally:
        server.close()


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback():
    import http.client

    server = LoopbackServer(0, host="::1", registry=make_registry()).start()
    try:
        assert server.url == f"http://[::1]:{server.port}/mcp"
        conn = http.client.HTTPConnection("::1", server.port, timeout=10)
        conn.request("POST", "/mcp", b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":'
                     b'"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}',
                     {"Content-Type": "application/json", "Authorization": f"Bearer {server.token}"})
        opened = conn.getresponse()
        opened.read()
        conn.request("POST", "/mcp", b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
                     {"Content-Type": "application/json", "Authorization": f"Bearer {server.token}",
                      "Mcp-Session-Id": opened.getheader("Mcp-Session-Id")})
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b'{"jsonrpc":"2.0","id":1,"result":{}}'
        conn.close()
    finally:
        server.close()


def test_a_connection_whose_thread_cannot_start_is_dropped_and_close_still_works(monkeypatch, caplog):
    """The outside world refuses a thread (resource exhaustion); the server stays consistent."""
    import threading

    server = LoopbackServer(0, registry=make_registry()).start()
    real_start = threading.Thread.start

    def refuse(self):
        if self.name.endswith(":conn"):
            raise RuntimeError("can't start new thread")
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.settimeout(5)
            assert sock.recv(1) == b""  # socketserver closed it: no thread to serve it
        assert server._httpd._connections == {}
    finally:
        monkeypatch.setattr(threading.Thread, "start", real_start)
    client = Client(server.port, server.token)
    try:
        assert client.rpc("ping")["result"] == {}
    finally:
        client.close()
    server.close()
    assert server.closed
