"""Errors: the one root every exception this package raises descends from.

Owns: ``LoopbackError`` and ``ProtocolError`` — an error answered to a client,
carrying both the HTTP status and the JSON-RPC code it is answered with (as h11's
``ProtocolError`` carries a status hint) — and the errors raised at the public API
that no single lower module owns (``StartError``, ``PortInUseError``).
Must not know: anything else; it imports nothing of this package.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not from typing: StartError is raised on the cold path of ensure()
if TYPE_CHECKING:
    from typing import Any

# JSON-RPC "server error" range: the code of a refusal given at the HTTP level.
HTTP_REFUSAL = -32000


class LoopbackError(Exception):
    """Base class of the errors this package raises."""


class ProtocolError(LoopbackError):
    """An error answered to a client: an HTTP ``status`` and a JSON-RPC ``code``.

    ``message`` is safe to show the client; ``data`` is the JSON-RPC error's data.
    """

    def __init__(self, message: str, *, status: int = 400, code: int = HTTP_REFUSAL, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.data = data

    def to_object(self) -> dict[str, Any]:
        """The JSON-RPC error object."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class HttpError(ProtocolError):
    """A request refused at the HTTP level (framing, limits, admission): status and message."""

    def __init__(self, status: int, message: str, *, close: bool = False,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message, status=status, code=HTTP_REFUSAL)
        self.close = close  # the connection cannot carry another request after this answer
        self.headers = headers  # extra response fields (Allow, WWW-Authenticate)


class CallTimeout(LoopbackError):
    """A host function ran past its deadline (``Settings.tool_timeout``); it was left running."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} seconds")
        self.seconds = seconds


class StartError(LoopbackError):
    """The server could not start."""


class PortInUseError(StartError):
    """The requested port is taken by another socket."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"cannot listen on {host}:{port}: the port is already in use")
        self.host = host
        self.port = port

