"""The package's shape, read from its source: no import cycle, and a pure core that reaches
no I/O module, through any chain of imports (module-level and inside functions alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "loopback"

# The pure core: bytes and dicts in, bytes and dicts out (DESIGN.md, "The shape").
CORE = {
    "errors", "settings", "auth", "http11", "admission", "jsonrpc", "eras", "protocol", "context",
    "catalog", "content", "schema", "tools", "resources", "prompts", "completions", "clients", "tasks",
    "subscriptions", "calllog", "_compat", "listening", "runtime",
}
# The shell: sockets, selectors, threads, processes, files, process-wide state.
SHELL = {"connection", "streams", "sessions", "workers", "server", "lifecycle", "host", "cli", "demo", "private",
         "callsinks", "acceptor",
         "stdio",
         "__main__", "__init__"}
# What no core module may import, directly or through another module of the package.
IO_MODULES = {"socket", "select", "selectors", "socketserver", "subprocess", "asyncio", "ssl", "signal",
              "multiprocessing", "http", "urllib.request", "shutil", "tempfile"}
# A core module may use threading only for a lock that guards data.
THREADING_ALLOWED = {"Lock", "RLock"}


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.glob("*.py"))}


def _imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(package modules, other modules) that ``tree`` imports anywhere, functions included."""
    own: set[str] = set()
    other: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from . import x / from .x import y
                if node.module:
                    own.add(node.module.split(".")[0])
                else:
                    own |= {alias.name for alias in node.names}
            elif node.module:
                if node.module.split(".")[0] == "loopback":
                    own.add(node.module.split(".")[1] if "." in node.module else "__init__")
                else:
                    other.add(node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "loopback":
                    own.add(alias.name.split(".")[1] if "." in alias.name else "__init__")
                else:
                    other.add(alias.name)
    return own, other


GRAPH = {name: _imports(tree) for name, tree in _modules().items()}


def test_every_module_is_placed_in_the_core_or_the_shell() -> None:
    assert set(GRAPH) == CORE | SHELL, set(GRAPH) ^ (CORE | SHELL)
    assert not CORE & SHELL


def test_the_import_graph_has_no_cycle() -> None:
    # __init__ is the lazy public facade (PEP 562): it names modules as strings, imports none.
    edges = {name: {m for m in own if m != "__init__"} for name, (own, _) in GRAPH.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def _closure(module: str) -> set[str]:
    seen = {module}
    todo = [module]
    while todo:
        for nxt in GRAPH[todo.pop()][0]:
            if nxt not in seen and nxt in GRAPH:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("module", sorted(CORE))
def test_a_core_module_reaches_no_shell_and_no_io_module(module: str) -> None:
    reached = _closure(module)
    assert not reached & SHELL, f"{module} reaches shell modules {sorted(reached & SHELL)}"
    io = {name for m in reached for name in GRAPH[m][1]
          if name in IO_MODULES or name.split(".")[0] in IO_MODULES}
    assert not io, f"{module} reaches I/O modules {sorted(io)}"


@pytest.mark.parametrize("module", sorted(CORE))
def test_a_core_module_uses_threading_only_for_locks(module: str) -> None:
    tree = _modules()[module]
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "threading"}
    used |= {alias.name for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module == "threading" for alias in node.names}
    assert used <= THREADING_ALLOWED, f"{module} uses threading.{sorted(used - THREADING_ALLOWED)}"


def test_the_graph_reader_sees_imports_inside_functions() -> None:
    tree = ast.parse("def f():\n    from .server import X\n    import socket\n")
    assert _imports(tree) == ({"server"}, {"socket"})
