"""completion/complete: completers for prompt arguments and resource template variables,
the 100-value cap, errors, and the conformance suite's request over real HTTP."""

from __future__ import annotations

from typing import Iterator

import pytest

import loopback
from loopback.jsonrpc import INVALID_PARAMS

from conftest import Client

from conftest import unit_module  # noqa: E402

_unit = unit_module("test_completion")
build_registry = _unit.build_registry

CITIES = ["paris", "park city", "parma", "berlin", "bern"]


# -- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def owner() -> Iterator[Client]:
    server = loopback.start(0, registry=build_registry())
    client = Client(server.port, server.token)
    try:
        yield client
    finally:
        client.close()
        server.close()


def test_initialize_offers_completions(owner: Client) -> None:
    assert owner.initialize()["capabilities"]["completions"] == {}


def test_completion_over_http(owner: Client) -> None:
    # What the conformance suite sends: an argument with no completer gives an empty list.
    conformance = owner.rpc("completion/complete", {"ref": {"type": "ref/prompt", "name": "trip"},
                                                    "argument": {"name": "country", "value": "test"}})
    assert conformance["result"] == {"completion": {"values": [], "total": 0, "hasMore": False}}
    answer = owner.rpc("completion/complete", {"ref": {"type": "ref/prompt", "name": "trip"},
                                               "argument": {"name": "city", "value": "ber"}})
    assert answer["result"]["completion"]["values"] == ["berlin", "bern"]
    unknown = owner.rpc("completion/complete", {"ref": {"type": "ref/prompt", "name": "nope"},
                                                "argument": {"name": "x", "value": ""}})
    assert unknown["error"]["code"] == INVALID_PARAMS
