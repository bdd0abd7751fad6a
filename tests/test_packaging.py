"""The package as a user vendors it: standard library only, typed, a small public API."""

from __future__ import annotations

import ast
import configparser
import sys
from pathlib import Path

import pytest

import loopback

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "loopback"


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is new in 3.10; the source is the same")
def test_runtime_imports_only_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"loopback", "__future__"}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in allowed]
    assert offenders == []


def test_protocol_layer_does_no_io():
    tree = ast.parse((PACKAGE / "protocol.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "threading", "http", "socketserver", "asyncio", "select"}


def test_every_module_states_its_responsibility():
    for path in PACKAGE.glob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc, f"{path.name} has no module docstring"


def test_ships_py_typed_and_declares_it():
    assert (PACKAGE / "py.typed").is_file()
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "py.typed" in config["options.package_data"]["loopback"]
    assert config["options.entry_points"]["console_scripts"].strip() == "loopback = loopback.cli:main"


def test_public_api_resolves():
    for name in loopback.__all__:
        assert getattr(loopback, name) is not None, name
    assert set(loopback.__all__) <= set(dir(loopback))


def test_unknown_attribute_is_an_attribute_error():
    try:
        loopback.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_registering_a_tool_loads_no_server_machinery():
    import subprocess

    code = (
        "import sys, threading, loopback\n"
        "@loopback.tool\n"
        "def f(a: int) -> int:\n"
        "    return a\n"
        "heavy = [m for m in ('http.server', 'http.client', 'socketserver', 'ssl', 'email', 'loopback.server',"
        " 'loopback.transport') if m in sys.modules]\n"
        "print(heavy, threading.active_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] 1"
