"""Argument completion: the ``completion/complete`` request.

Owns: resolving a completion reference (``ref/prompt`` by name, ``ref/resource`` by
URI template) to the completer the host registered for one argument, calling it,
and shaping its values into a ``CompleteResult`` (at most 100 values, ``total``,
``hasMore``). The completers themselves are kept by the prompt and resource
registries. Registered by ``protocol`` from ``HANDLERS``.
Must not know: HTTP, sockets, sessions.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

from .jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, JsonRpcError
from .context import RequestContext
from .prompts import PromptRegistry
from .resources import Completer, ResourceRegistry


__all__ = ["HANDLERS", "MAX_VALUES", "complete"]

_log = logging.getLogger("loopback")

# MCP 2025-11-25 completion: "values: ... Must not exceed 100 items."
MAX_VALUES = 100


def complete(completer: Optional[Completer], value: str, arguments: Mapping[str, str]) -> dict[str, Any]:
    """The ``completion`` object for one call of ``completer`` (no completer: no values).

    Raises TypeError when the completer returns something other than a list of str;
    whatever the completer raises propagates.
    """
    if completer is None:
        return {"values": [], "total": 0, "hasMore": False}
    values = completer(value, dict(arguments))
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not all(
        isinstance(item, str) for item in values
    ):
        raise TypeError(f"a completer must return a list of str, not {type(values).__name__}")
    return {"values": list(values[:MAX_VALUES]), "total": len(values), "hasMore": len(values) > MAX_VALUES}


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: {what} must be an object of strings")
    return value


def _completer(ref: Any, argument: str, ctx: RequestContext) -> Optional[Completer]:
    if not isinstance(ref, dict):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: completion/complete needs a 'ref' object")
    kind = ref.get("type")
    if kind == "ref/prompt":
        name = ref.get("name")
        if not isinstance(name, str):
            raise JsonRpcError(INVALID_PARAMS, "Invalid params: a ref/prompt needs a string 'name'")
        prompts: PromptRegistry = ctx.registry.prompts
        if prompts.get(name) is None:
            raise JsonRpcError(INVALID_PARAMS, f"Unknown prompt: {name}")
        return prompts.completer(name, argument)
    if kind == "ref/resource":
        uri = ref.get("uri")
        if not isinstance(uri, str):
            raise JsonRpcError(INVALID_PARAMS, "Invalid params: a ref/resource needs a string 'uri'")
        resources: ResourceRegistry = ctx.registry.resources
        if resources.get(uri) is None:
            raise JsonRpcError(INVALID_PARAMS, f"Unknown resource template: {uri}", {"uri": uri})
        return resources.completer(uri, argument)
    raise JsonRpcError(INVALID_PARAMS, f"Invalid params: unknown ref type {kind!r} (use ref/prompt or ref/resource)")


def _complete(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    argument = params.get("argument")
    if not isinstance(argument, dict) or not isinstance(argument.get("name"), str) \
            or not isinstance(argument.get("value"), str):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: 'argument' must be an object with string 'name' and 'value'")
    context = params.get("context")
    if context is not None and not isinstance(context, dict):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: 'context' must be an object")
    arguments = _string_map((context or {}).get("arguments"), "context.arguments")
    completer = _completer(params.get("ref"), argument["name"], ctx)
    try:
        return {"completion": complete(completer, argument["value"], arguments)}
    except Exception as exc:  # the host's completer failed: say what, never with the traceback
        _log.warning("completer for %r raised %s", argument["name"], type(exc).__name__)
        _log.debug("completer for %r failed", argument["name"], exc_info=True)
        raise JsonRpcError(INTERNAL_ERROR, f"Completion failed: {type(exc).__name__}: {exc}") from None


HANDLERS: dict[str, Callable[[Mapping[str, Any], RequestContext, Any], dict[str, Any]]] = {
    "completion/complete": _complete,
}
