"""A small SSE reader over http.client for the stream tests (real sockets, bounded waits)."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any, Optional

from conftest import PROTOCOL


class Event(dict):
    """One SSE event: ``id``, ``retry``, ``event``, ``data`` (raw text), ``comments``."""

    @property
    def message(self) -> Any:
        return json.loads(self["data"]) if self.get("data") else None


def read_event(response: http.client.HTTPResponse, deadline: float = 10.0) -> Optional[Event]:
    """The next event (or keep-alive comment, as an event with only ``comments``); None at
    the end of the body. The socket timeout of the connection bounds each read."""
    event = Event(comments=[])
    end = time.monotonic() + deadline
    seen = False
    while time.monotonic() < end:
        line = response.readline()
        if not line:
            return event if seen else None
        text = line.decode("utf-8").rstrip("\r\n")
        if text == "":
            if seen:
                return event
            continue
        seen = True
        if text.startswith(":"):
            event["comments"].append(text[1:].strip())
            continue
        name, _, value = text.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            event["data"] = (event["data"] + "\n" + value) if "data" in event else value
        else:
            event[name] = value
    raise TimeoutError("no complete event in time")


def next_message(response: http.client.HTTPResponse, deadline: float = 10.0) -> tuple[Event, Any]:
    """Skip priming events and comments; the next event that carries a JSON message."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        event = read_event(response, max(0.1, end - time.monotonic()))
        if event is None:
            raise EOFError("the stream ended")
        if event.get("data"):
            return event, event.message
    raise TimeoutError("no message in time")


def headers(token: Optional[str], session_id: Optional[str] = None, **extra: str) -> dict[str, str]:
    result = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
              "MCP-Protocol-Version": PROTOCOL}
    if token:
        result["Authorization"] = f"Bearer {token}"
    if session_id:
        result["Mcp-Session-Id"] = session_id
    result.update(extra)
    return result


def open_get(port: int, token: Optional[str], session_id: Optional[str], timeout: float = 10.0,
             **extra: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """``GET /mcp`` with ``Accept: text/event-stream``: the connection and its response (head read)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = headers(token, session_id, Accept="text/event-stream", **extra)
    del h["Content-Type"]
    conn.request("GET", "/mcp", headers=h)
    return conn, conn.getresponse()


def start_post(port: int, token: Optional[str], session_id: Optional[str], message: dict[str, Any],
               timeout: float = 10.0, **extra: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """POST a message on a fresh connection; the response with only its head read."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", "/mcp", json.dumps(message).encode(), headers(token, session_id, **extra))
    return conn, conn.getresponse()
