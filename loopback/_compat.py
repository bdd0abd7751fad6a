"""What the supported interpreters (Python 3.9 to 3.13) do differently, in one place.

Owns: ``slotted`` (``__slots__`` for a dataclass, as ``dataclass(slots=True)`` gives on
3.10+), recognising the TypedDict key qualifiers of ``typing`` and of ``typing_extensions``
(``is_qualifier``),
the union origins (``UNION_ORIGINS``: ``typing.Union`` and, on 3.10+, ``types.UnionType``),
and evaluating string annotations written ``X | Y`` on 3.9 (``get_type_hints``).
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
    metaclass: Any = type(cls)
    new = metaclass(cls.__name__, cls.__bases__, namespace)
    new.__qualname__ = cls.__qualname__
    return typing.cast("type[_T]", new)


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
    """``typing.get_type_hints(obj, include_extras=True)``, also for ``int | None`` strings on 3.9.

    Python 3.10+ evaluates ``X | Y`` itself. Python 3.9 cannot: with ``from __future__
    import annotations`` a user's ``int | None`` stays a string until now. There, when the
    standard call fails, each string annotation is evaluated again with ``|`` read as
    ``typing.Union`` (``Optional`` for a ``None`` default and ``Annotated`` work as usual).
    """
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except TypeError:
        if sys.version_info >= (3, 10):
            raise
    return _hints_with_pipes(obj)  # pragma: no cover (3.9 only)


def _hints_with_pipes(obj: Any) -> dict[str, Any]:  # pragma: no cover (3.9 only)
    if isinstance(obj, type):
        hints: dict[str, Any] = {}
        for base in reversed(obj.__mro__):
            module = sys.modules.get(base.__module__)
            globalns = dict(getattr(module, "__dict__", {}))
            raw = base.__dict__.get("__annotations__", {})
            evaluated = {name: _evaluate(value, globalns, dict(vars(base))) for name, value in raw.items()}
            hints.update(typing.get_type_hints(_Annotated(evaluated, globalns, None), include_extras=True))
        return hints
    inner = obj
    while hasattr(inner, "__wrapped__"):
        inner = inner.__wrapped__
    globalns = dict(getattr(inner, "__globals__", {}))
    raw = getattr(obj, "__annotations__", None) or {}
    evaluated = {name: _evaluate(value, globalns, None) for name, value in raw.items()}
    return typing.get_type_hints(_Annotated(evaluated, globalns, obj), include_extras=True)


def _evaluate(value: Any, globalns: dict[str, Any], localns: Any) -> Any:  # pragma: no cover (3.9 only)
    """A string annotation containing ``|`` evaluated with ``|`` as ``typing.Union``; anything else as is."""
    if not isinstance(value, str) or "|" not in value:
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


class _Annotated:  # pragma: no cover (3.9 only)
    """What ``typing.get_type_hints`` reads: annotations, their namespace, and a function's defaults."""

    def __init__(self, annotations: dict[str, Any], globalns: dict[str, Any], func: Any) -> None:
        self.__annotations__ = annotations
        self.__globals__ = globalns
        if func is not None and hasattr(func, "__code__"):  # a None default makes the hint Optional on 3.9
            self.__code__ = func.__code__
            self.__defaults__ = func.__defaults__
            self.__kwdefaults__ = func.__kwdefaults__
