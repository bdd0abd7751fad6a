"""What the supported interpreters (Python 3.9 to 3.13) do differently, in one place.

Owns: ``slotted`` (``__slots__`` for a dataclass, as ``dataclass(slots=True)`` gives on
3.10+), recognising the TypedDict key qualifiers of ``typing`` and of ``typing_extensions``
(``is_qualifier``),
the union origins (``UNION_ORIGINS``: ``typing.Union`` and, on 3.10+, ``types.UnionType``),
and type hints as Python 3.11+ resolves them (``get_type_hints``).
Must not know: MCP, HTTP, JSON-RPC, sockets, threads.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any, TypeVar

__all__ = ["UNION_ORIGINS", "get_type_hints", "is_qualifier", "slotted"]

_T = TypeVar("_T")


def slotted(cls: type[_T]) -> type[_T]:
    """The dataclass ``cls`` rebuilt with ``__slots__`` for its fields: no ``__dict__`` per instance.

    What ``dataclass(slots=True)`` does on Python 3.10+, on every version. Apply it above
    ``@dataclass``. Like the standard one, it makes a new class, so a method of ``cls``
    must not use zero-argument ``super()``.
    """
    if "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__} already specifies __slots__")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    inherited: set[str] = set()
    for base in cls.__mro__[1:-1]:
        slots = base.__dict__.get("__slots__", ())
        inherited.update((slots,) if isinstance(slots, str) else slots)
    namespace = dict(cls.__dict__)
    for name in (*names, "__dict__", "__weakref__"):
        namespace.pop(name, None)  # a field's default stays in __init__'s signature
    namespace["__slots__"] = tuple(name for name in names if name not in inherited)
    if cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        # @dataclass's own methods name the old class (super(cls, self) would then fail
        # with a TypeError for a name that is not a field); with slots nothing else can be set.
        namespace["__setattr__"] = _frozen_setattr
        namespace["__delattr__"] = _frozen_delattr
    metaclass: Any = type(cls)
    new = metaclass(cls.__name__, cls.__bases__, namespace)
    new.__qualname__ = cls.__qualname__
    return typing.cast("type[_T]", new)


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def is_qualifier(origin: Any, name: str) -> bool:
    """Whether ``origin`` is the TypedDict key qualifier ``name`` ("Required", "NotRequired",
    "ReadOnly") of ``typing`` (3.11+; ReadOnly 3.13+) or of ``typing_extensions``, which
    3.9 and 3.10 need for them; loopback never imports it, it only recognises its forms."""
    if origin is None:
        return False
    extensions = sys.modules.get("typing_extensions")
    return any(origin is q for q in (getattr(typing, name, None), getattr(extensions, name, None)) if q is not None)


UNION_ORIGINS: tuple[Any, ...] = (typing.Union,) + ((types.UnionType,) if sys.version_info >= (3, 10) else ())


def get_type_hints(obj: Any) -> dict[str, Any]:
    """``typing.get_type_hints(obj, include_extras=True)`` as Python 3.11+ gives it, on 3.9 and 3.10 too.

    Before 3.11 the standard call differs in three ways, undone here: a parameter whose
    default is ``None`` gets its hint wrapped in ``Optional`` (3.11 stopped that); a string
    inside a builtin generic (``list["Tree"]``) stays a string; and on 3.9 ``X | Y``
    cannot be evaluated (with ``from __future__ import annotations`` a user's
    ``int | None`` stays a string until now): there each ``|`` is read as ``typing.Union``.
    """
    if sys.version_info >= (3, 11):
        return typing.get_type_hints(obj, include_extras=True)
    return _old_get_type_hints(obj)  # pragma: no cover (3.9 and 3.10 only)


def _old_get_type_hints(obj: Any) -> dict[str, Any]:  # pragma: no cover (3.9 and 3.10 only)
    if isinstance(obj, type):
        hints: dict[str, Any] = {}
        for base in reversed(obj.__mro__):
            if "__annotations__" not in base.__dict__:
                continue
            module = sys.modules.get(base.__module__)
            globalns = dict(getattr(module, "__dict__", {}))
            localns = dict(vars(base))
            raw = base.__dict__["__annotations__"]
            evaluated = {name: _evaluate(value, globalns, localns) for name, value in raw.items()}
            found = typing.get_type_hints(_Annotations(evaluated, {**globalns, **localns}), include_extras=True)
            hints.update({name: _resolve_nested(hint, globalns, localns) for name, hint in found.items()})
        return hints
    inner = obj
    while hasattr(inner, "__wrapped__"):
        inner = inner.__wrapped__
    namespace = getattr(inner, "__globals__", None)
    annotations = getattr(obj, "__annotations__", None)
    if not isinstance(namespace, dict) or not isinstance(annotations, dict):  # not a function: the standard call
        return typing.get_type_hints(obj, include_extras=True)
    evaluated = {name: _evaluate(value, namespace, None) for name, value in annotations.items()}
    # _Annotations has no __defaults__: a None default does not make the hint Optional.
    found = typing.get_type_hints(_Annotations(evaluated, namespace), include_extras=True)
    return {name: _resolve_nested(hint, namespace, None) for name, hint in found.items()}


def _resolve_nested(hint: Any, globalns: dict[str, Any], localns: Any) -> Any:  # pragma: no cover (3.9, 3.10)
    """``hint`` with the strings inside builtin generics (``list["Tree"]``) evaluated."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if not args or origin is typing.Literal:  # a Literal's strings are values
        return hint
    if origin is typing.Annotated:  # its metadata is not types
        inner = _resolve_nested(args[0], globalns, localns)
        return hint if inner is args[0] else typing.Annotated[(inner, *hint.__metadata__)]
    builtin = isinstance(hint, types.GenericAlias)
    new = tuple(
        _resolve_nested(eval(arg, globalns, localns) if builtin and isinstance(arg, str) else arg, globalns, localns)  # noqa: S307
        for arg in args
    )
    if all(a is b for a, b in zip(new, args)):
        return hint
    if builtin:
        return types.GenericAlias(hint.__origin__, new)
    if origin is typing.Union:
        return typing.Union[new]
    if origin in UNION_ORIGINS:  # types.UnionType: int | list["X"] on 3.10
        union = new[0]
        for member in new[1:]:
            union = union | member
        return union
    copy_with = getattr(hint, "copy_with", None)
    return copy_with(new) if copy_with is not None else hint


def _evaluate(value: Any, globalns: dict[str, Any], localns: Any) -> Any:  # pragma: no cover (3.9 and 3.10 only)
    """On 3.9, a string annotation containing ``|`` evaluated with ``|`` as ``typing.Union``; else as is."""
    if isinstance(value, typing.ForwardRef):  # TypedDict keeps its string annotations as these
        value = value.__forward_arg__
    if sys.version_info >= (3, 10) or not isinstance(value, str) or "|" not in value:
        return value
    import ast  # only here: keeps `import loopback` cheap

    class PipeToUnion(ast.NodeTransformer):
        def visit_BinOp(self, node: ast.BinOp) -> ast.AST:  # A | B  ->  __loopback_union__[A, B]
            self.generic_visit(node)
            if not isinstance(node.op, ast.BitOr):
                return node
            members = ast.Tuple(elts=[node.left, node.right], ctx=ast.Load())
            return ast.Subscript(value=ast.Name(id="__loopback_union__", ctx=ast.Load()), slice=members, ctx=ast.Load())

    try:
        tree = ast.parse(value, mode="eval")
    except SyntaxError:
        return value
    code = compile(ast.fix_missing_locations(PipeToUnion().visit(tree)), "<annotation>", "eval")
    return eval(code, {**globalns, "__loopback_union__": typing.Union}, localns)  # noqa: S307 - as get_type_hints does


class _Annotations:  # pragma: no cover (3.9 and 3.10 only)
    """What ``typing.get_type_hints`` reads of a function: its annotations and globals (no defaults)."""

    def __init__(self, annotations: dict[str, Any], globalns: dict[str, Any]) -> None:
        self.__annotations__ = annotations
        self.__globals__ = globalns
