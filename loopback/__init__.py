"""loopback: a zero-dependency MCP server on 127.0.0.1 for the coding agents a Python host spawns.

Public API only. Importing this package starts nothing and imports no other module:
the server machinery is loaded on first use of a name that needs it (PEP 562), and
``@loopback.tool`` before then only records the function for the default registry.

    import loopback

    @loopback.tool
    def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    server = loopback.ensure()          # lazy, process-wide, single-flight
    print(server.url, server.token)
    loopback.close()
"""

# The version check runs before anything else, so that any older Python gets one ImportError
# (no ``from __future__ import annotations``: 3.6 cannot compile it; the annotations below are
# strings instead, and typing is never imported at run time).
import sys

if sys.version_info < (3, 9):  # pragma: no cover (tests/integration/test_packaging.py runs it on an older Python)
    raise ImportError(
        "loopback needs Python 3.9 or newer; this is Python {}.{}.{} ({})".format(
            sys.version_info[0], sys.version_info[1], sys.version_info[2], sys.executable
        )
    )

import _thread  # noqa: E402

TYPE_CHECKING = False  # not imported from typing: ``import loopback`` loads no module it does not need


__version__ = "0.1.0"

__all__ = [
    "__version__",
    "tool",
    "before_call",
    "resource",
    "prompt",
    "completion",
    "notify_resource_updated",
    "start",
    "ensure",
    "close",
    "active_runtime",
    "default_registry",
    "prepare_agent_run",
    "PreparedRun",
    "AgentProcess",
    "RunLimitError",
    "open_runs",
    "install_sigterm_cleanup",
    "LoopbackServer",
    "Runtime",
    "Settings",
    "Tool",
    "ToolRegistry",
    "ResourceRegistry",
    "PromptRegistry",
    "Message",
    "Context",
    "InputRequired",
    "Background",
    "JsonRpcError",
    "ClientRequestError",
    "CallBlocked",
    "SchemaError",
    "Grant",
    "Text",
    "Image",
    "Audio",
    "EmbeddedResource",
    "ResourceLink",
    "LoopbackError",
    "StartError",
    "PortInUseError",
]

_LAZY = {
    "start": "lifecycle",
    "ensure": "lifecycle",
    "close": "lifecycle",
    "active_runtime": "lifecycle",
    "default_registry": "lifecycle",
    "prepare_agent_run": "host",
    "PreparedRun": "host",
    "AgentProcess": "host",
    "RunLimitError": "host",
    "open_runs": "lifecycle",
    "install_sigterm_cleanup": "lifecycle",
    "LoopbackServer": "server",
    "Runtime": "runtime",
    "LoopbackError": "errors",
    "StartError": "errors",
    "PortInUseError": "errors",
    "Settings": "settings",
    "Tool": "tools",
    "ToolRegistry": "tools",
    "CallBlocked": "tools",
    "SchemaError": "tools",
    "ResourceRegistry": "resources",
    "PromptRegistry": "prompts",
    "Message": "prompts",
    "Context": "context",
    "InputRequired": "content",
    "Background": "tasks",
    "JsonRpcError": "jsonrpc",
    "ClientRequestError": "context",
    "Grant": "auth",
    "Text": "content",
    "Image": "content",
    "Audio": "content",
    "EmbeddedResource": "content",
    "ResourceLink": "content",
}

if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from .auth import Grant
    from .content import Audio, EmbeddedResource, Image, InputRequired, ResourceLink, Text
    from .context import ClientRequestError, Context
    from .errors import LoopbackError, PortInUseError, StartError
    from .jsonrpc import JsonRpcError
    from .tasks import Background
    from .host import AgentProcess, PreparedRun, RunLimitError, prepare_agent_run
    from .lifecycle import active_runtime, close, default_registry, ensure, install_sigterm_cleanup, open_runs, start
    from .prompts import Message, PromptRegistry
    from .resources import ResourceRegistry
    from .runtime import Runtime
    from .server import LoopbackServer
    from .settings import Settings
    from .tools import CallBlocked, SchemaError, Tool, ToolRegistry


def __getattr__(name: str) -> "Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopback' has no attribute {name!r}")
    __import__(f"{__name__}.{module}")
    value = getattr(sys.modules[f"{__name__}.{module}"], name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(__all__))


# Tools registered with ``@loopback.tool`` before the default registry exists: the
# registry (``lifecycle``, and with it the schema and request machinery) is loaded when
# first needed (the first ``ensure()``, ``default_registry()``), and adds these then.
_pending: "list[tuple[Callable[..., Any], dict[str, Any]]]" = []
_pending_lock = _thread.allocate_lock()
_registry_ready = False  # set by lifecycle once its registry has taken _pending


def tool(func: "Optional[Callable[..., Any]]" = None, **options: "Any") -> "Any":
    """Register a function as a tool of the default registry: ``@loopback.tool`` or
    ``@loopback.tool(name=..., title=..., description=..., annotations=..., owner_only=...,
    task="optional" | "required")`` (see ``ToolRegistry.add``).

    A parameter annotated ``loopback.Context`` receives the request context.

    Registering costs next to nothing: the tool's schemas are built when the default
    registry is first needed (the first ``ensure()``, ``start()`` or
    ``default_registry()``), and an invalid tool raises there.
    """
    if func is None:
        def register(f: "Callable[..., Any]") -> "Callable[..., Any]":
            return tool(f, **options)  # type: ignore[no-any-return]
        return register
    if not _registry_ready:
        with _pending_lock:
            if not _registry_ready:
                if not callable(func):
                    raise TypeError(f"a tool must be callable, not {type(func).__name__}")
                _pending.append((func, options))
                return func
    from .lifecycle import default_registry

    return default_registry().tool(func, **options)


def before_call(hook: "Any") -> "Any":
    """Set the default registry's before-call hook (see ``ToolRegistry.before_call``);
    usable as a decorator. ``before_call(None)`` removes it."""
    from .lifecycle import default_registry

    return default_registry().before_call(hook)


def resource(uri: str, **options: "Any") -> "Callable[[Callable[..., Any]], Callable[..., Any]]":
    """Register a function as a resource of the default registry:
    ``@loopback.resource(uri, name=..., title=..., description=..., mime_type=...)``.

    It returns ``str`` (text), ``bytes`` (a blob) or a list of contents; ``None`` means
    no such resource. A ``uri`` with ``{var}`` parts registers a resource template
    whose variables are the function's parameters.
    """
    from .lifecycle import default_registry

    return default_registry().resources.resource(uri, **options)


def prompt(name: "Any" = None, **options: "Any") -> "Any":
    """Register a function as a prompt of the default registry: ``@loopback.prompt`` or
    ``@loopback.prompt("name", title=..., description=...)``.

    Its str parameters are the prompt's arguments; it returns a str (one user message)
    or a list of ``loopback.Message``.
    """
    from .lifecycle import default_registry

    return default_registry().prompts.prompt(name, **options)


def completion(
    *, prompt: "Optional[str]" = None, resource: "Optional[str]" = None, argument: str
) -> "Callable[[Callable[[str, dict[str, str]], list[str]]], Callable[[str, dict[str, str]], list[str]]]":
    """Register ``func(value, arguments) -> list[str]`` giving completion values for one
    argument of a prompt (by name) or of a resource template (by its URI template):
    ``@loopback.completion(prompt="greet", argument="language")``.
    """
    from .lifecycle import default_registry

    if (prompt is None) == (resource is None):
        raise TypeError("completion() needs exactly one of prompt= or resource=")

    def register(func: "Callable[[str, dict[str, str]], list[str]]") -> "Callable[[str, dict[str, str]], list[str]]":
        registry = default_registry()
        if prompt is not None:
            registry.prompts.add_completer(prompt, argument, func)
        else:
            registry.resources.add_completer(resource, argument, func)  # type: ignore[arg-type]
        return func

    return register


def notify_resource_updated(uri: str) -> None:
    """Tell the clients subscribed to ``uri`` (default registry) that it changed."""
    from .lifecycle import default_registry

    default_registry().resources.notify_updated(uri)
