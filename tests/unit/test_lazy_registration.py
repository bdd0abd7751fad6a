"""``@loopback.tool`` before the default registry exists costs next to nothing: the tool
waits in ``loopback._pending`` and the registry adds it, in order, when first loaded; a
tool that cannot be added raises from the first ``default_registry()``. Fresh
interpreters, so that the registry is not loaded yet."""

from __future__ import annotations

from conftest import run_python as _run


def test_register_imports_nothing_and_registry_adopts_in_order() -> None:
    proc = _run(
        "import sys, loopback\n"
        "before = set(sys.modules)\n"
        "@loopback.tool\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
        "@loopback.tool(name='second', description='d')\n"
        "def other(x: str) -> str:\n"
        "    return x\n"
        "assert set(sys.modules) == before, sorted(set(sys.modules) - before)\n"
        "assert add(1, 2) == 3  # the function is returned unchanged\n"
        "registry = loopback.default_registry()\n"
        "assert [t.name for t in registry.tools()] == ['add', 'second'], registry.tools()\n"
        "assert registry.get('second').description == 'd'\n"
        "assert registry.get('add').input_schema['properties']['a'] == {'type': 'integer'}\n"
        "@loopback.tool\n"
        "def third() -> None:\n"
        "    pass\n"
        "assert 'third' in registry  # once loaded, registration is immediate\n"
        "print('ok')\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_a_tool_that_cannot_be_added_raises_at_first_use() -> None:
    proc = _run(
        "import loopback\n"
        "@loopback.tool\n"
        "def bad(x: object) -> int:\n"
        "    return 1\n"
        "@loopback.tool\n"
        "def good() -> int:\n"
        "    return 1\n"
        "try:\n"
        "    loopback.default_registry()\n"
        "except loopback.SchemaError as exc:\n"
        "    assert 'bad' in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        "assert [t.name for t in loopback.default_registry().tools()] == ['good']\n"
        "print('ok')\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
