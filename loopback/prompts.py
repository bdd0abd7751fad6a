"""Prompts: message templates the host offers, listed with ``prompts/list`` and filled in by ``prompts/get``.

Owns: the prompt registry (prompts, completers for their arguments, change
listeners), describing a function's string parameters as prompt arguments (via
``schema``, like tool parameters, descriptions from the docstring), checking the
arguments of a ``prompts/get``, running the function (with its ``Context``, through
the shell's runner for ``tool_timeout``; an ``InputRequired`` answered as the
request's era allows), turning what a prompt function returns into
``PromptMessage`` objects (``Message``), and the ``prompts/*`` request handlers,
registered by ``protocol`` from ``HANDLERS``.
Must not know: HTTP, sockets, sessions, or how notifications reach clients.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional, TypeVar, Union, overload

from ._compat import slotted
from .errors import CallTimeout, LoopbackError
from .content import CONTENT_TYPES, InputRequired, Audio, EmbeddedResource, Image, ResourceLink, Text
from .context import Context, RequestContext
from .jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, JsonRpcError
from .catalog import Entries, page
from .resources import Completer
from .schema import SchemaError, Signature, ToolArgumentError, check_value, compile_signature


__all__ = ["HANDLERS", "Message", "Prompt", "PromptArgumentError", "PromptRegistry"]

_log = logging.getLogger("loopback")

F = TypeVar("F", bound=Callable[..., Any])

Role = Literal["user", "assistant"]
_ROLES = ("user", "assistant")


class PromptArgumentError(LoopbackError, ValueError):
    """The arguments of a ``prompts/get`` do not fit the prompt (missing, unknown or not strings)."""


@slotted
@dataclass(frozen=True)
class Message:
    """One message of a prompt: a role ("user" or "assistant") and one content block.

    ``content`` is a ``Text``, ``Image``, ``Audio``, ``EmbeddedResource`` or
    ``ResourceLink``, or a plain str (a text block).
    """

    role: Role
    content: Union[str, Text, Image, Audio, EmbeddedResource, ResourceLink]

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"Message.role must be 'user' or 'assistant', not {self.role!r}")
        if not isinstance(self.content, (str, *CONTENT_TYPES)):
            raise TypeError(
                "Message.content must be a str, Text, Image, Audio, EmbeddedResource or ResourceLink,"
                f" not {type(self.content).__name__}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The ``PromptMessage`` object."""
        content = self.content
        block = {"type": "text", "text": content} if isinstance(content, str) else content.to_block()
        return {"role": self.role, "content": block}


def _messages(value: Any) -> list[dict[str, Any]]:
    """A prompt function's return value as ``PromptMessage`` objects; a bare str or block is from the user."""
    items = value if isinstance(value, (list, tuple)) else [value]
    messages = []
    for item in items:
        if not isinstance(item, Message):
            if not isinstance(item, (str, *CONTENT_TYPES)):
                raise TypeError(
                    "a prompt function must return a str, a Message or content object, or a list of them,"
                    f" not {type(item).__name__}"
                )
            item = Message("user", item)
        messages.append(item.to_dict())
    return messages


def _accepts_strings(schema: Mapping[str, Any]) -> bool:
    if "anyOf" in schema:
        return any(_accepts_strings(option) for option in schema["anyOf"])
    return bool(schema.get("type", "string") == "string")


@dataclass(frozen=True)
class Prompt:
    """One registered prompt: its MCP description and the function that fills it in."""

    name: str
    func: Callable[..., Any] = field(repr=False)
    title: Optional[str] = None
    description: Optional[str] = None
    arguments: tuple[Mapping[str, Any], ...] = ()
    signature: Optional[Signature] = field(default=None, repr=False)
    context_param: Optional[str] = field(default=None, repr=False)

    def definition(self) -> dict[str, Any]:
        """The ``Prompt`` object of ``prompts/list``."""
        prompt: dict[str, Any] = {"name": self.name}
        if self.title:
            prompt["title"] = self.title
        if self.description:
            prompt["description"] = self.description
        if self.arguments:
            prompt["arguments"] = [dict(argument) for argument in self.arguments]
        return prompt

    def call(self, arguments: Mapping[str, Any], context: Optional[Context] = None,
             runner: Optional[Callable[[Callable[[], Any], Context], Any]] = None) -> Any:
        """Check ``arguments`` and call the function; what it returned.

        Raises PromptArgumentError for arguments that do not fit; whatever the function
        raises propagates. A parameter annotated ``Context`` receives ``context``.
        ``runner`` runs the call (the shell's, which enforces ``tool_timeout``).
        """
        assert self.signature is not None
        try:
            checked = check_value(dict(arguments), self.signature.input_schema, "arguments")
        except ToolArgumentError as exc:
            raise PromptArgumentError(f"Invalid arguments for prompt {self.name!r}: {exc}") from None
        kwargs = self.signature.convert(checked)
        if context is None and (self.context_param is not None or runner is not None):
            context = Context(tool_name=self.name)
        if self.context_param is not None:
            kwargs = {**kwargs, self.context_param: context}
        if runner is None:
            return self.func(**kwargs)
        assert context is not None
        func = self.func
        return runner(lambda: func(**kwargs), context)

    def result(self, value: Any) -> dict[str, Any]:
        """The ``GetPromptResult`` for a value the function returned (TypeError for a wrong type)."""
        result: dict[str, Any] = {}
        if self.description:
            result["description"] = self.description
        result["messages"] = _messages(value)
        return result

    def render(self, arguments: Mapping[str, Any], context: Optional[Context] = None) -> dict[str, Any]:
        """``call`` then ``result``: the ``GetPromptResult`` for ``arguments``."""
        return self.result(self.call(arguments, context))


class PromptRegistry:
    """A thread-safe, ordered set of prompts. Reads take no lock (copy-on-write snapshot)."""

    def __init__(self) -> None:
        self._prompts = Entries[str, Prompt]("prompt")
        self._completers = Entries[tuple[str, str], Completer]("prompt-completer")

    def add(
        self,
        func: Callable[..., Any],
        *,
        name: Optional[str] = None,
        title: Optional[str] = None,
        description: Optional[str] = None,
        replace: bool = False,
    ) -> Prompt:
        """Register ``func`` as a prompt and return it.

        Its parameters are the prompt's arguments: strings (``str``, ``Optional[str]``,
        a ``Literal`` of strings, or unannotated), required when they have no default,
        described by the docstring's parameter section as for tools; one annotated
        ``loopback.Context`` receives the request context instead. It returns a str
        (one user message), a ``Message``, a content object (a user message) or a list
        of these. The name defaults to the function's name, the description to its
        docstring without the parameter section. A name already taken raises
        ``ValueError`` unless ``replace=True``.
        """
        if not callable(func):
            raise TypeError(f"a prompt must be callable, not {type(func).__name__}")
        prompt_name = name if name is not None else getattr(func, "__name__", "")
        if not isinstance(prompt_name, str) or not prompt_name.strip():
            raise ValueError(f"invalid prompt name {prompt_name!r}: use a non-empty string")
        try:
            # Message and content types as "content": the return annotation needs no schema.
            signature = compile_signature(func, prompt_name, context_types=(Context,),
                                          content_types=(Message, *CONTENT_TYPES))
        except SchemaError as exc:  # its messages speak of tools
            raise SchemaError(str(exc).replace("tool ", "prompt ", 1)) from None
        schema = signature.input_schema
        required = set(schema.get("required", ()))
        arguments = []
        for arg_name, arg_schema in schema["properties"].items():
            if not _accepts_strings(arg_schema):
                raise SchemaError(f"prompt {prompt_name!r}, parameter {arg_name!r}: prompt arguments are strings;"
                                  f" annotate it str (or Optional[str])")
            argument: dict[str, Any] = {"name": arg_name}
            if arg_schema.get("description"):
                argument["description"] = arg_schema["description"]
            argument["required"] = arg_name in required
            arguments.append(argument)
        prompt = Prompt(
            name=prompt_name,
            func=func,
            title=title,
            description=description if description is not None else (signature.description or None),
            arguments=tuple(arguments),
            signature=signature,
            context_param=signature.context_param,
        )
        self._prompts.add(prompt_name, prompt, replace=replace,
                          taken=f"a prompt named {prompt_name!r} is already registered")
        return prompt

    @overload
    def prompt(self, name: F) -> F: ...

    @overload
    def prompt(self, name: Optional[str] = None, **options: Any) -> Callable[[F], F]: ...

    def prompt(self, name: Any = None, **options: Any) -> Any:
        """Decorator: ``@registry.prompt`` or ``@registry.prompt("name", title=..., description=...)``.

        Returns the function unchanged.
        """
        if callable(name):
            self.add(name, **options)
            return name

        def register(func: F) -> F:
            self.add(func, name=name, **options)
            return func

        return register

    def remove(self, name: str) -> bool:
        """Unregister a prompt; True if it was there."""
        return self._prompts.remove(name)

    def add_completer(self, prompt: str, argument: str, completer: Completer) -> None:
        """Give completion values for argument ``argument`` of prompt ``prompt``.

        ``completer(value, arguments)`` gets the partial value and the other arguments
        already chosen and returns the candidates (at most 100 are sent).
        """
        if not callable(completer):
            raise TypeError("a completer must be callable")
        registered = self._prompts.get(prompt)
        if registered is not None and argument not in [a["name"] for a in registered.arguments]:
            raise ValueError(f"prompt {prompt!r} has no argument {argument!r}")
        self._completers.add((prompt, argument), completer, replace=True)

    def completer(self, prompt: str, argument: str) -> Optional[Completer]:
        return self._completers.get((prompt, argument))

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every add or remove; returns a function that unsubscribes.

        Servers use this to send ``notifications/prompts/list_changed``. A listener
        must be quick and must not raise (errors are logged).
        """
        return self._prompts.changed.add(listener)

    def get(self, name: str) -> Optional[Prompt]:
        return self._prompts.get(name)

    def prompts(self) -> list[Prompt]:
        """The registered prompts in registration order (a snapshot)."""
        return self._prompts.values()

    def __len__(self) -> int:
        return len(self._prompts)

    def __contains__(self, name: object) -> bool:
        return name in self._prompts


# -- request handlers -----------------------------------------------------------------------------


def _list(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    return page(ctx.registry.prompts.prompts(), params, ctx.settings.page_size, "prompts")


def _get(params: Mapping[str, Any], ctx: RequestContext, request_id: Any) -> dict[str, Any]:
    name = params.get("name")
    if not isinstance(name, str):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: prompts/get needs a string 'name'")
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, dict):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: 'arguments' must be an object")
    registry: PromptRegistry = ctx.registry.prompts
    prompt = registry.get(name)
    if prompt is None:
        raise JsonRpcError(INVALID_PARAMS, f"Unknown prompt: {name}")
    context = ctx.context_for(name, request_id, params)
    try:
        for _ in range(_INPUT_ROUNDS):
            value = prompt.call(arguments, context, ctx.runner)
            if not isinstance(value, InputRequired):
                break
            if context.accepts_input_required:  # 2026-07-28: the client must answer first
                return value.to_result()
            refusal = context.carry_out(value.requests, value.state)  # handshake era: ask on the stream
            if refusal is not None:
                raise JsonRpcError(INTERNAL_ERROR, f"Prompt {name!r} needs input the client did not give: {refusal}")
        else:
            raise JsonRpcError(INTERNAL_ERROR, f"Prompt {name!r} asked for input too many times")
        result: dict[str, Any] = prompt.result(value)
        return result
    except PromptArgumentError as exc:
        raise JsonRpcError(INVALID_PARAMS, str(exc)) from None
    except JsonRpcError:
        raise
    except CallTimeout as exc:
        _log.warning("prompt %r timed out after %g s", name, exc.seconds)
        raise JsonRpcError(INTERNAL_ERROR, f"Prompt {name!r} timed out after {exc.seconds:g} seconds") from None
    except Exception as exc:  # the host's function failed: say what, never with the traceback
        _log.warning("prompt %r raised %s", name, type(exc).__name__)
        _log.debug("prompt %r failed", name, exc_info=True)
        raise JsonRpcError(INTERNAL_ERROR, f"Prompt {name!r} failed: {type(exc).__name__}: {exc}") from None


_INPUT_ROUNDS = 8  # rounds of input a handshake-era prompts/get may gather before giving up

HANDLERS: dict[str, Callable[[Mapping[str, Any], RequestContext, Any], dict[str, Any]]] = {
    "prompts/list": _list,
    "prompts/get": _get,
}
