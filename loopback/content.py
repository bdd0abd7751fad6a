"""Tool result content: text, images, audio and resources, and whole ``CallToolResult`` objects.

Owns: the content objects a tool may return (``Text``, ``Image``, ``Audio``,
``EmbeddedResource``, ``ResourceLink``) and their MCP 2025-11-25 content blocks, which
return values count as content rather than data, turning any return value into a
``CallToolResult`` (content, ``structuredContent``, ``isError``; data through
``schema.to_jsonable``), and ``InputRequired``, what a function returns when it needs
the client's input first (2026-07-28, SEP-2322).
Must not know: HTTP, sockets, threads, JSON-RPC.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, ClassVar, Final, Optional, Protocol, TypeVar, Union

from ._compat import slotted

from .schema import to_jsonable

__all__ = [
    "CONTENT_TYPES",
    "Audio",
    "DeclaredOutput",
    "EmbeddedResource",
    "Image",
    "ResourceLink",
    "Text",
    "content_blocks",
    "error_result",
    "to_call_result",
]

# One encoder for every result: json.dumps with options builds a new one per call.
_to_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode

_BYTES_LIKE: Final = (bytes, bytearray, memoryview)
# Return types that are never content: to_call_result skips content_blocks for them.
_DATA_TYPES: Final = frozenset({dict, int, float, bool})
_ANNOTATION_KEYS: Final = ("audience", "priority", "lastModified")
_ROLES: Final = ("user", "assistant")
# Where a bare bytes return value is said to come from: the spec requires a URI.
_RESULT_URI: Final = "loopback://result"


def _require_str(value: object, what: str, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value and not empty_ok:
        raise ValueError(f"{what} must not be empty")
    return value


def _require_optional_str(value: object, what: str) -> None:
    if value is not None:
        _require_str(value, what, empty_ok=True)


def _require_mime_type(value: object, what: str, family: Optional[str] = None) -> None:
    mime_type = _require_str(value, what)
    if "/" not in mime_type:
        raise ValueError(f"{what} must look like 'type/subtype', not {mime_type!r}")
    if family is not None and not mime_type.lower().startswith(family + "/"):
        raise ValueError(f"{what} must be a {family}/* type, not {mime_type!r}")


def _frozen_bytes(owner: object, name: str, value: object, what: str) -> None:
    """Store ``value`` as immutable bytes; a str is refused because it is ambiguous (text or base64?)."""
    if isinstance(value, str):
        raise TypeError(f"{what} must be bytes, not str: pass the raw bytes, base64 is applied when the block is built")
    if not isinstance(value, _BYTES_LIKE):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    if type(value) is not bytes:
        object.__setattr__(owner, name, bytes(value))


def _check_annotations(annotations: object) -> None:
    if annotations is None:
        return
    if not isinstance(annotations, Mapping):
        raise TypeError(f"annotations must be a mapping, not {type(annotations).__name__}")
    unknown = [key for key in annotations if key not in _ANNOTATION_KEYS]
    if unknown:
        raise ValueError(f"unknown annotation(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(_ANNOTATION_KEYS)}")
    audience = annotations.get("audience")
    if audience is not None and (
        not isinstance(audience, (list, tuple)) or any(role not in _ROLES for role in audience)
    ):
        raise ValueError(f"annotations['audience'] must be a list of 'user' and/or 'assistant', not {audience!r}")
    priority = annotations.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, (int, float)) or not 0 <= priority <= 1
    ):
        raise ValueError(f"annotations['priority'] must be a number from 0 to 1, not {priority!r}")
    _require_optional_str(annotations.get("lastModified"), "annotations['lastModified']")


def _check_meta(meta: object) -> None:
    if meta is None:
        return
    if not isinstance(meta, Mapping) or not all(isinstance(key, str) for key in meta):
        raise TypeError("meta must be a mapping with str keys")


def _check_extras(annotations: object, meta: object) -> None:
    _check_annotations(annotations)
    _check_meta(meta)


def _with_extras(
    block: dict[str, Any], annotations: Optional[Mapping[str, Any]], meta: Optional[Mapping[str, Any]]
) -> dict[str, Any]:
    """Add the optional ``annotations`` and ``_meta`` every content block may carry."""
    if annotations is not None:
        emitted = dict(annotations)
        if "audience" in emitted:
            emitted["audience"] = list(emitted["audience"])
        block["annotations"] = emitted
    if meta is not None:
        block["_meta"] = dict(meta)
    return block


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _read_media(path: Union[str, os.PathLike[str]], mime_type: Optional[str], family: str) -> tuple[bytes, str]:
    """The bytes of the file at ``path`` and its MIME type, guessed from the name unless given."""
    if mime_type is None:
        import mimetypes  # only from_path needs it; keeps `import loopback` cheap

        mime_type, _ = mimetypes.guess_type(os.fspath(path))
        if mime_type is None:
            raise ValueError(f"cannot guess the MIME type of {os.fspath(path)!r}; pass mime_type=")
        if not mime_type.startswith(family + "/"):
            raise ValueError(f"{os.fspath(path)!r} looks like {mime_type}, not {family}/*")
    with open(path, "rb") as file:
        return file.read(), mime_type


_Extras = Optional[Mapping[str, Any]]  # annotations and meta: keyword-only everywhere


def _assign(obj: object, **values: Any) -> None:
    """Set a frozen content object's fields, then check them (``__post_init__``)."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)
    obj.__post_init__()  # type: ignore[attr-defined]


# Each class writes its own __init__ (``annotations`` and ``meta`` keyword-only, as
# dataclasses.KW_ONLY would make them, which Python 3.9 lacks); @dataclass adds the rest.
@slotted
@dataclass(frozen=True)
class Text:
    """Text for the model: ``{"type": "text", "text": ...}``."""

    text: str
    annotations: _Extras = None
    meta: _Extras = None

    def __init__(self, text: str, *, annotations: _Extras = None, meta: _Extras = None) -> None:
        _assign(self, text=text, annotations=annotations, meta=meta)

    def __post_init__(self) -> None:
        _require_str(self.text, "Text.text", empty_ok=True)
        _check_extras(self.annotations, self.meta)

    def to_block(self) -> dict[str, Any]:
        return _with_extras({"type": "text", "text": self.text}, self.annotations, self.meta)


_M = TypeVar("_M", bound="_Media")


@slotted
@dataclass(frozen=True)
class _Media:
    """Raw bytes plus a MIME type of the subclass's family; base64-encoded in the block."""

    _family: ClassVar[str]
    data: bytes
    mime_type: str
    annotations: _Extras = None
    meta: _Extras = None

    def __init__(self, data: bytes, mime_type: str, *, annotations: _Extras = None, meta: _Extras = None) -> None:
        _assign(self, data=data, mime_type=mime_type, annotations=annotations, meta=meta)

    def __post_init__(self) -> None:
        kind = type(self).__name__
        _frozen_bytes(self, "data", self.data, f"{kind}.data")
        _require_mime_type(self.mime_type, f"{kind}.mime_type", self._family)
        _check_extras(self.annotations, self.meta)

    @classmethod
    def from_path(cls: type[_M], path: Union[str, os.PathLike[str]], mime_type: Optional[str] = None) -> _M:
        """The contents of a file; the MIME type is guessed from its name unless given."""
        data, guessed = _read_media(path, mime_type, cls._family)
        return cls(data, guessed)

    def to_block(self) -> dict[str, Any]:
        block = {"type": self._family, "data": _base64(self.data), "mimeType": self.mime_type}
        return _with_extras(block, self.annotations, self.meta)


@slotted
@dataclass(frozen=True, init=False)
class Image(_Media):
    """An image: raw bytes plus an ``image/*`` MIME type (``Image.from_path`` guesses it)."""

    _family: ClassVar[str] = "image"


@slotted
@dataclass(frozen=True, init=False)
class Audio(_Media):
    """A sound: raw bytes plus an ``audio/*`` MIME type (``Audio.from_path`` guesses it)."""

    _family: ClassVar[str] = "audio"


@slotted
@dataclass(frozen=True)
class EmbeddedResource:
    """A resource's contents carried inside the result: exactly one of ``text`` or ``blob``."""

    uri: str
    text: Optional[str] = None
    blob: Optional[bytes] = None
    mime_type: Optional[str] = None
    annotations: _Extras = None
    meta: _Extras = None

    def __init__(
        self,
        uri: str,
        text: Optional[str] = None,
        blob: Optional[bytes] = None,
        mime_type: Optional[str] = None,
        *,
        annotations: _Extras = None,
        meta: _Extras = None,
    ) -> None:
        _assign(self, uri=uri, text=text, blob=blob, mime_type=mime_type, annotations=annotations, meta=meta)

    def __post_init__(self) -> None:
        _require_str(self.uri, "EmbeddedResource.uri")
        if (self.text is None) == (self.blob is None):
            raise ValueError("EmbeddedResource needs exactly one of text or blob")
        if self.text is not None:
            _require_str(self.text, "EmbeddedResource.text", empty_ok=True)
        else:
            _frozen_bytes(self, "blob", self.blob, "EmbeddedResource.blob")
        if self.mime_type is not None:
            _require_mime_type(self.mime_type, "EmbeddedResource.mime_type")
        _check_extras(self.annotations, self.meta)

    def to_block(self) -> dict[str, Any]:
        resource: dict[str, Any] = {"uri": self.uri}
        if self.mime_type is not None:
            resource["mimeType"] = self.mime_type
        if self.blob is not None:
            resource["blob"] = _base64(self.blob)
        else:
            resource["text"] = self.text
        return _with_extras({"type": "resource", "resource": resource}, self.annotations, self.meta)


@slotted
@dataclass(frozen=True)
class ResourceLink:
    """A pointer to a resource the client may read later, instead of its contents."""

    uri: str
    name: str
    title: Optional[str] = None
    description: Optional[str] = None
    mime_type: Optional[str] = None
    size: Optional[int] = None
    annotations: _Extras = None
    meta: _Extras = None

    def __init__(
        self,
        uri: str,
        name: str,
        title: Optional[str] = None,
        description: Optional[str] = None,
        mime_type: Optional[str] = None,
        size: Optional[int] = None,
        *,
        annotations: _Extras = None,
        meta: _Extras = None,
    ) -> None:
        _assign(self, uri=uri, name=name, title=title, description=description, mime_type=mime_type, size=size,
                annotations=annotations, meta=meta)

    def __post_init__(self) -> None:
        _require_str(self.uri, "ResourceLink.uri")
        _require_str(self.name, "ResourceLink.name")
        _require_optional_str(self.title, "ResourceLink.title")
        _require_optional_str(self.description, "ResourceLink.description")
        if self.mime_type is not None:
            _require_mime_type(self.mime_type, "ResourceLink.mime_type")
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0):
            raise ValueError(f"ResourceLink.size must be a non-negative int (bytes), not {self.size!r}")
        _check_extras(self.annotations, self.meta)

    def to_block(self) -> dict[str, Any]:
        block: dict[str, Any] = {"type": "resource_link", "uri": self.uri, "name": self.name}
        if self.title is not None:
            block["title"] = self.title
        if self.description is not None:
            block["description"] = self.description
        if self.mime_type is not None:
            block["mimeType"] = self.mime_type
        if self.size is not None:
            block["size"] = self.size
        return _with_extras(block, self.annotations, self.meta)


# The content classes, for the schema module to recognise content return annotations.
CONTENT_TYPES: Final = (Text, Image, Audio, EmbeddedResource, ResourceLink)
_MEDIA_TYPES: Final = CONTENT_TYPES + _BYTES_LIKE  # list items that make a list content


class DeclaredOutput(Protocol):
    """What ``to_call_result`` needs of a tool's declared output (the schema module's ``Output``)."""

    @property
    def wrapped(self) -> bool:
        """True when the schema describes ``{"result": value}`` rather than the value itself."""


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _blob_block(data: Union[bytes, bytearray, memoryview], uri: str) -> dict[str, Any]:
    resource = {"uri": uri, "mimeType": "application/octet-stream", "blob": _base64(bytes(data))}
    return {"type": "resource", "resource": resource}


def content_blocks(value: Any) -> Optional[list[dict[str, Any]]]:
    """The content blocks ``value`` stands for, or None when it is plain data.

    Content is: one content object; bytes (an octet-stream blob); or a list or tuple of
    content objects, bytes and str (each str one text block) with at least one item that
    is not a str. A list of only str, or an empty list, is data: a JSON array.
    """
    if not isinstance(value, (list, tuple)):
        if isinstance(value, CONTENT_TYPES):
            return [value.to_block()]
        if isinstance(value, _BYTES_LIKE):
            return [_blob_block(value, _RESULT_URI)]
        return None
    has_media = False
    for item in value:
        if isinstance(item, str):
            continue
        if not isinstance(item, _MEDIA_TYPES):
            return None
        has_media = True
    if not has_media:
        return None
    blocks: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            blocks.append(_text_block(item))
        elif isinstance(item, _BYTES_LIKE):
            # Several blobs in one result each get their own URI, numbered by position.
            blocks.append(_blob_block(item, f"{_RESULT_URI}/{index}"))
        else:
            blocks.append(item.to_block())
    return blocks


def error_result(message: str) -> dict[str, Any]:
    """A tool execution error: reaches the model, which may correct itself."""
    return {"content": [_text_block(message)], "isError": True}


def to_call_result(
    value: Any,
    output: Optional[DeclaredOutput] = None,
    *,
    to_jsonable: Callable[[Any], Any] = to_jsonable,
) -> dict[str, Any]:
    """A tool's return value as a ``CallToolResult``; never raises.

    Content (see ``content_blocks``) becomes the content list as is. ``str`` is one text
    block; ``None`` no content. Other values are sent as their JSON text, and as
    ``structuredContent`` when they are a dict, or as ``{"result": value}`` when
    ``output`` says the declared schema wraps them. A value JSON cannot hold becomes
    an error result.
    """
    if isinstance(value, str):
        result: dict[str, Any] = {"content": [_text_block(value)], "isError": False}
        if output is not None and output.wrapped:
            result["structuredContent"] = {"result": value}
        return result
    if value is None:
        if output is not None and output.wrapped:
            return {"content": [], "isError": False, "structuredContent": {"result": None}}
        return {"content": [], "isError": False}
    if type(value) not in _DATA_TYPES:
        blocks = content_blocks(value)
        if blocks is not None:
            return {"content": blocks, "isError": False}
    try:
        if type(value) is int:  # the usual scalar: its JSON text is what the encoder writes for it
            text = int.__repr__(value)
        elif output is not None:
            # structuredContent is checked against the schema next: it must hold plain JSON values.
            value = to_jsonable(value)
            text = _to_json(value)
        else:
            try:
                text = _to_json(value)  # plain data: one pass in C, no Python walk
            except TypeError:
                value = to_jsonable(value)  # dataclasses or Enums somewhere inside
                text = _to_json(value)
    except Exception as exc:  # TypeError, ValueError (NaN, cycles), RecursionError, or a failing to_jsonable
        return error_result(f"the tool returned a value that cannot be sent as JSON: {exc}")
    result = {"content": [_text_block(text)], "isError": False}
    if output is not None and output.wrapped:
        result["structuredContent"] = {"result": value}
    elif isinstance(value, dict):
        result["structuredContent"] = value
    return result


# SEP-2322 (multi round-trip requests): what each kind of input request needs the
# client to have declared.
INPUT_REQUEST_CAPABILITIES = {
    "elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots",
}


class InputRequired:
    """What a tool (or prompt, or resource) returns when it needs the client's input first.

    ``requests`` maps keys of your choosing to input requests, each
    ``{"method": "elicitation/create" | "sampling/createMessage" | "roots/list", "params": {...}}``;
    ``state`` is an optional string you get back on the retry (``ctx.request_state``),
    signed by the server so the client cannot alter it. The client answers with a retry
    of the same request carrying ``inputResponses`` (``ctx.input_responses``: key ->
    the client's result), and the function runs again from the start (SEP-2322).
    """

    __slots__ = ("requests", "state")

    def __init__(self, requests: Mapping[str, Mapping[str, Any]], state: Optional[str] = None) -> None:
        if state is not None and not isinstance(state, str):
            raise TypeError(f"state must be a string or None, not {type(state).__name__}")
        if not requests and state is None:
            raise ValueError("InputRequired needs at least one input request or a state")
        checked: dict[str, dict[str, Any]] = {}
        for key, request in requests.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"input request keys must be non-empty strings, not {key!r}")
            method = request.get("method") if isinstance(request, Mapping) else None
            if method not in INPUT_REQUEST_CAPABILITIES:
                raise ValueError(f"input request {key!r}: method must be one of {', '.join(INPUT_REQUEST_CAPABILITIES)}")
            params = request.get("params", {})
            if not isinstance(params, Mapping):
                raise ValueError(f"input request {key!r}: params must be an object")
            checked[key] = {"method": method, "params": dict(params)}
        self.requests = checked
        self.state = state

    def to_result(self) -> dict[str, Any]:
        """The ``InputRequiredResult`` (before the server signs its ``requestState``)."""
        result: dict[str, Any] = {"resultType": "input_required", "inputRequests": self.requests}
        if self.state is not None:
            result["requestState"] = self.state
        return result

    def __repr__(self) -> str:
        return f"InputRequired({sorted(self.requests)!r}, state={'set' if self.state is not None else None})"
