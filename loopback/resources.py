"""Resources: data the host exposes by URI, read by clients with ``resources/read``.

Owns: the resource registry (static resources by URI, resource templates with
RFC 6570 level-1 ``{var}`` URIs, completers for template variables, change and
update listeners), turning what a resource function returns into MCP 2025-11-25
resource contents, and the ``resources/*`` request handlers (list, templates/list,
read, subscribe, unsubscribe), registered by ``protocol`` from ``HANDLERS``.
Must not know: HTTP, sockets, sessions beyond ``ctx.session.subscriptions``, or how
notifications reach clients (servers subscribe with ``on_change``/``on_updated``).
"""

from __future__ import annotations

import base64
import inspect
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, TypeVar, Union
from urllib.parse import unquote

from .catalog import Entries, ListenerSet, page
from .content import Audio, EmbeddedResource, Image, Text
from .context import RequestContext
from .jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, JsonRpcError


__all__ = [
    "HANDLERS",
    "RESOURCE_NOT_FOUND",
    "Completer",
    "Resource",
    "ResourceRegistry",
    "ResourceTemplate",
]

_log = logging.getLogger("loopback")

F = TypeVar("F", bound=Callable[..., Any])

# MCP 2025-11-25 resources "Error Handling"; the 2026-07-28 era spells it -32602.
RESOURCE_NOT_FOUND = -32002

Completer = Callable[[str, dict[str, str]], list[str]]
"""``completer(value, arguments)``: completion values for one argument, given what the
user typed so far and the other arguments already chosen."""

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_EXPRESSION_RE = re.compile(r"\{([^{}]*)\}")
# Level 1 is the simple expansion only; these prefixes are the operators of levels 2-4.
_OPERATORS = "+#./;?&=,!@|"
_TEXT_MIME = "text/plain"
_BINARY_MIME = "application/octet-stream"


def _check_uri(uri: object, what: str) -> str:
    if not isinstance(uri, str):
        raise TypeError(f"{what} must be a str, not {type(uri).__name__}")
    if not _SCHEME_RE.match(uri):
        raise ValueError(f"{what} {uri!r} must be an absolute URI with a scheme, e.g. 'file:///notes.txt'")
    return uri


def _template_pattern(template: str) -> tuple[tuple[str, ...], re.Pattern[str]]:
    """The variables of a level-1 URI template and the regex matching its expansions."""
    names: list[str] = []
    parts: list[str] = []
    position = 0
    for match in _EXPRESSION_RE.finditer(template):
        literal = template[position:match.start()]
        if "{" in literal or "}" in literal:
            raise ValueError(f"URI template {template!r} has an unbalanced brace")
        parts.append(re.escape(literal))
        name = match.group(1)
        if name[:1] in _OPERATORS or "," in name or ":" in name or "*" in name:
            raise ValueError(f"URI template {template!r}: only simple {{name}} variables are supported, not {{{name}}}")
        if not name.isidentifier():
            raise ValueError(f"URI template {template!r}: variable {name!r} must be a Python identifier")
        if name in names:
            raise ValueError(f"URI template {template!r} uses the variable {name!r} twice")
        names.append(name)
        # A simple expansion percent-encodes '/', '?' and '#', so a value never holds them raw.
        parts.append(f"(?P<{name}>[^/?#]+)")
        position = match.end()
    tail = template[position:]
    if "{" in tail or "}" in tail:
        raise ValueError(f"URI template {template!r} has an unbalanced brace")
    parts.append(re.escape(tail))
    return tuple(names), re.compile("".join(parts))


def _check_parameters(func: Callable[..., Any], variables: tuple[str, ...], where: str) -> None:
    """The function must take exactly the template variables (extra parameters need defaults)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: cannot read the function's signature: {exc}") from None
    names = set()
    for param in parameters:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(f"{where}: parameter {param.name!r} must be a plain named parameter")
        names.add(param.name)
        if param.name not in variables and param.default is param.empty:
            if variables:
                raise TypeError(f"{where}: parameter {param.name!r} is not a variable of the URI template"
                                f" ({', '.join(variables)}) and has no default")
            raise TypeError(f"{where}: a static resource's function takes no arguments, but"
                            f" {param.name!r} has no default")
    missing = [name for name in variables if name not in names]
    if missing:
        raise TypeError(f"{where}: the function has no parameter for template variable(s) {', '.join(missing)}")


def _definition(key: str, entry: Union["Resource", "ResourceTemplate"]) -> dict[str, Any]:
    item: dict[str, Any] = {key: entry.uri, "name": entry.name}
    if entry.title:
        item["title"] = entry.title
    if entry.description:
        item["description"] = entry.description
    if entry.mime_type:
        item["mimeType"] = entry.mime_type
    return item


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _contents(value: Any, uri: str, mime_type: Optional[str]) -> dict[str, Any]:
    """One item of ``ReadResourceResult.contents``."""
    if isinstance(value, str):
        return {"uri": uri, "mimeType": mime_type or _TEXT_MIME, "text": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"uri": uri, "mimeType": mime_type or _BINARY_MIME, "blob": _base64(bytes(value))}
    if isinstance(value, Text):
        item: dict[str, Any] = {"uri": uri, "mimeType": mime_type or _TEXT_MIME, "text": value.text}
    elif isinstance(value, (Image, Audio)):
        item = {"uri": uri, "mimeType": value.mime_type, "blob": _base64(value.data)}
    elif isinstance(value, EmbeddedResource):
        item = dict(value.to_block()["resource"])  # keeps its own URI: a part of the resource read
    else:
        raise TypeError(
            f"a resource function must return str, bytes, Text, Image, Audio, EmbeddedResource or a list"
            f" of them, not {type(value).__name__}"
        )
    if value.meta is not None:
        item["_meta"] = dict(value.meta)
    return item


@dataclass(frozen=True)
class Resource:
    """One resource with a fixed URI and the function that produces its contents."""

    uri: str
    name: str
    func: Callable[[], Any] = field(repr=False)
    title: Optional[str] = None
    description: Optional[str] = None
    mime_type: Optional[str] = None

    def definition(self) -> dict[str, Any]:
        """The ``Resource`` object of ``resources/list``."""
        return _definition("uri", self)

    def read(self, uri: Optional[str] = None) -> Optional[list[dict[str, Any]]]:
        """Call the function; its contents, or None when it returned None (no such resource)."""
        return _read(self.func, {}, uri or self.uri, self.mime_type)


@dataclass(frozen=True)
class ResourceTemplate:
    """A family of resources: a level-1 URI template whose variables are the function's parameters."""

    uri: str  # the template, e.g. "file:///logs/{day}"
    name: str
    func: Callable[..., Any] = field(repr=False)
    title: Optional[str] = None
    description: Optional[str] = None
    mime_type: Optional[str] = None
    variables: tuple[str, ...] = ()
    pattern: Optional[re.Pattern[str]] = field(default=None, repr=False, compare=False)

    def definition(self) -> dict[str, Any]:
        """The ``ResourceTemplate`` object of ``resources/templates/list``."""
        return _definition("uriTemplate", self)

    def match(self, uri: str) -> Optional[dict[str, str]]:
        """The (percent-decoded) variables when ``uri`` is an expansion of this template."""
        assert self.pattern is not None
        found = self.pattern.fullmatch(uri)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}

    def read(self, uri: str) -> Optional[list[dict[str, Any]]]:
        variables = self.match(uri)
        if variables is None:
            return None
        return _read(self.func, variables, uri, self.mime_type)


def _read(func: Callable[..., Any], arguments: dict[str, str], uri: str,
          mime_type: Optional[str]) -> Optional[list[dict[str, Any]]]:
    value = func(**arguments)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_contents(item, uri, mime_type) for item in value]
    return [_contents(value, uri, mime_type)]


class ResourceRegistry:
    """A thread-safe, ordered set of resources and resource templates. Reads take no lock."""

    def __init__(self) -> None:
        # Resources and templates share one URI space, so one map holds both.
        self._entries = Entries[str, Union[Resource, ResourceTemplate]]("resource")
        self._completers = Entries[tuple[str, str], Completer]("resource-completer")
        self._updated = ListenerSet[Callable[[str], None]]("resource-update")

    def add(
        self,
        func: Callable[..., Any],
        uri: str,
        *,
        name: Optional[str] = None,
        title: Optional[str] = None,
        description: Optional[str] = None,
        mime_type: Optional[str] = None,
        replace: bool = False,
    ) -> Union[Resource, ResourceTemplate]:
        """Register ``func`` as the resource at ``uri`` and return it.

        A ``uri`` with ``{var}`` parts (RFC 6570 level 1) registers a template: the
        function's parameters are its variables, called with the decoded values of a
        matching URI. The function returns ``str`` (text), ``bytes`` (a blob), a
        content object (``Text``, ``Image``, ``Audio``, ``EmbeddedResource``) or a list
        of them; ``None`` means "no such resource". ``mime_type`` applies to str and
        bytes (default text/plain and application/octet-stream). The name defaults to
        the function's name, the description to its docstring. A URI already
        registered raises ``ValueError`` unless ``replace=True``.
        """
        if not callable(func):
            raise TypeError(f"a resource must be callable, not {type(func).__name__}")
        _check_uri(uri, "resource uri")
        resource_name = name if name is not None else getattr(func, "__name__", "")
        if not isinstance(resource_name, str) or not resource_name:
            raise ValueError(f"resource {uri!r} needs a name: pass name=")
        if mime_type is not None and (not isinstance(mime_type, str) or "/" not in mime_type):
            raise ValueError(f"resource {uri!r}: mime_type must look like 'type/subtype', not {mime_type!r}")
        if description is None:
            description = inspect.getdoc(func) or None
        entry: Union[Resource, ResourceTemplate]
        if "{" in uri or "}" in uri:
            variables, pattern = _template_pattern(uri)
            _check_parameters(func, variables, f"resource template {uri!r}")
            entry = ResourceTemplate(uri, resource_name, func, title, description, mime_type, variables, pattern)
        else:
            _check_parameters(func, (), f"resource {uri!r}")
            entry = Resource(uri, resource_name, func, title, description, mime_type)
        self._entries.add(uri, entry, replace=replace, taken=f"a resource with URI {uri!r} is already registered")
        return entry

    def resource(self, uri: str, **options: Any) -> Callable[[F], F]:
        """Decorator: ``@registry.resource("file:///notes/{name}", mime_type=...)``.

        Takes the options of ``add``; returns the function unchanged.
        """

        def register(func: F) -> F:
            self.add(func, uri, **options)
            return func

        return register

    def remove(self, uri: str) -> bool:
        """Unregister the resource or template registered at ``uri``; True if it was there."""
        return self._entries.remove(uri)

    def add_completer(self, template: str, argument: str, completer: Completer) -> None:
        """Give completion values for variable ``argument`` of the template ``template``.

        ``completer(value, arguments)`` gets the partial value and the other variables
        already chosen and returns the candidates (at most 100 are sent).
        """
        if not callable(completer):
            raise TypeError("a completer must be callable")
        registered = self._entries.get(template)
        if isinstance(registered, ResourceTemplate) and argument not in registered.variables:
            raise ValueError(f"resource template {template!r} has no variable {argument!r}"
                             f" (it has: {', '.join(registered.variables) or 'none'})")
        self._completers.add((template, argument), completer, replace=True)

    def completer(self, template: str, argument: str) -> Optional[Completer]:
        return self._completers.get((template, argument))

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every add or remove; returns a function that unsubscribes.

        Servers use this to send ``notifications/resources/list_changed``. A listener
        must be quick and must not raise (errors are logged).
        """
        return self._entries.changed.add(listener)

    def on_updated(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(uri)`` on every ``notify_updated(uri)``; returns a function that unsubscribes."""
        return self._updated.add(listener)

    def notify_updated(self, uri: str) -> None:
        """Tell clients subscribed to ``uri`` that its contents changed
        (``notifications/resources/updated``); they read it again if they care."""
        _check_uri(uri, "resource uri")
        self._updated.fire(uri)

    def get(self, uri: str) -> Optional[Union[Resource, ResourceTemplate]]:
        """The resource or template registered at exactly ``uri``."""
        return self._entries.get(uri)

    def resources(self) -> list[Resource]:
        """The static resources in registration order (a snapshot)."""
        return [entry for entry in self._entries.values() if isinstance(entry, Resource)]

    def templates(self) -> list[ResourceTemplate]:
        """The resource templates in registration order (a snapshot)."""
        return [entry for entry in self._entries.values() if isinstance(entry, ResourceTemplate)]

    def find(self, uri: str) -> Optional[Union[Resource, ResourceTemplate]]:
        """What serves ``uri``: the static resource with that URI, else the first template matching it."""
        found = self._entries.get(uri)
        resource = found if isinstance(found, Resource) else None
        if resource is not None:
            return resource
        for template in self.templates():
            if template.match(uri) is not None:
                return template
        return None

    def read(self, uri: str) -> Optional[list[dict[str, Any]]]:
        """The contents of ``uri``, or None when no resource has it. Exceptions of the
        resource function propagate; a return value of the wrong type is a TypeError."""
        entry = self.find(uri)
        return None if entry is None else entry.read(uri)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, uri: object) -> bool:
        return uri in self._entries


# -- request handlers -----------------------------------------------------------------------------


def _uri_param(params: Mapping[str, Any], method: str) -> str:
    uri = params.get("uri")
    if not isinstance(uri, str) or not uri:
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: {method} needs a string 'uri'")
    return uri


def _list(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    return page(ctx.registry.resources.resources(), params, ctx.settings.page_size, "resources")


def _templates_list(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    return page(ctx.registry.resources.templates(), params, ctx.settings.page_size, "resourceTemplates")


def _read_handler(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    uri = _uri_param(params, "resources/read")
    try:
        contents = ctx.registry.resources.read(uri)
    except Exception as exc:  # the host's function failed: say what, never with the traceback
        _log.warning("resource %r raised %s", uri, type(exc).__name__)
        _log.debug("resource %r failed", uri, exc_info=True)
        raise JsonRpcError(INTERNAL_ERROR, f"Reading resource {uri} failed: {type(exc).__name__}: {exc}",
                           {"uri": uri}) from None
    if contents is None:
        raise JsonRpcError(RESOURCE_NOT_FOUND, "Resource not found", {"uri": uri})
    return {"contents": contents}


def _subscribe(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    # Any URI may be watched, also one that a template serves or that appears later.
    ctx.session.subscriptions.add(_uri_param(params, "resources/subscribe"))
    return {}


def _unsubscribe(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    ctx.session.subscriptions.discard(_uri_param(params, "resources/unsubscribe"))
    return {}


HANDLERS: dict[str, Callable[[Mapping[str, Any], RequestContext, Any], dict[str, Any]]] = {
    "resources/list": _list,
    "resources/templates/list": _templates_list,
    "resources/read": _read_handler,
    "resources/subscribe": _subscribe,
    "resources/unsubscribe": _unsubscribe,
}
