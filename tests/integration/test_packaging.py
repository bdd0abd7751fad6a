"""The package as a user vendors it: standard library only, typed, a small public API."""

from __future__ import annotations

import ast
import configparser
import sys
from pathlib import Path

import pytest

import loopback

ROOT = Path(__file__).resolve().parents[2]
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


def test_every_module_states_its_responsibility():
    for path in PACKAGE.glob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc, f"{path.name} has no module docstring"


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.9 and 3.10: the same parser from PyPI (tox deps)
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_ships_py_typed_and_declares_it():
    assert (PACKAGE / "py.typed").is_file()
    pyproject = _pyproject()
    assert pyproject["tool"]["setuptools"]["package-data"]["loopback"] == ["py.typed"]
    assert pyproject["project"]["scripts"] == {"loopback": "loopback.cli:main"}


def test_metadata_lives_in_pyproject_only():
    pyproject = _pyproject()
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    project = pyproject["project"]
    assert project["license"] == "MIT"  # SPDX (PEP 639): no license classifier, no deprecation warning
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert project["requires-python"] == ">=3.9" and project["dependencies"] == []
    assert project["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "loopback.__version__"}
    tested = {f"Programming Language :: Python :: 3.{minor}" for minor in range(9, 14)}
    assert tested <= set(project["classifiers"])
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert not {"metadata", "options"} & set(config.sections()), "metadata belongs in pyproject.toml"
    envlist = configparser.ConfigParser()
    envlist.read(ROOT / "tox.ini")
    assert [e.strip() for e in envlist["tox"]["envlist"].split(",")] == [f"py3{minor}" for minor in range(9, 14)]
    assert envlist["tox"]["skip_missing_interpreters"] == "false"


def test_the_package_imports_itself_only_relatively():
    """``from loopback import x`` inside the package would break a vendored copy
    (``myapp._vendor.loopback``): every import of a sibling is relative."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "loopback":
                offenders.append(f"{path.name}:{node.lineno}")
            elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "loopback" for a in node.names):
                offenders.append(f"{path.name}:{node.lineno}")
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                    "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                    and str(node.args[0].value).split(".")[0] == "loopback":
                offenders.append(f"{path.name}:{node.lineno}")  # importlib.import_module("loopback.x")
    assert offenders == []


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
        " 'loopback.connection') if m in sys.modules]\n"
        "print(heavy, threading.active_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] 1"


# -- the built sdist and wheel, used from outside the checkout ---------------------------------

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import urllib.request  # noqa: E402
import zipfile  # noqa: E402

TOOLS_FILE = (
    "import loopback\n\n"
    "@loopback.tool\n"
    "def shout(text: str) -> str:\n"
    "    'Upper-case the text.'\n"
    "    return text.upper()\n"
)
# Copied to build from: the build writes egg-info and build/ next to its sources.
_NOT_SOURCES = shutil.ignore_patterns(".git", ".tox", ".venv", "node_modules", "__pycache__", "build", "dist",
                                      "*.egg-info", ".coverage*", ".pytest_cache", ".hypothesis", ".mypy_cache")


def _outside_env() -> dict[str, str]:
    """The environment of a user's shell: nothing that points into the checkout."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "COV_CORE", "COVERAGE", "LOOPBACK_", "VIRTUAL_ENV"))}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build``: the sdist, then the wheel built from that sdist (as build does)."""
    pytest.importorskip("build", reason="needs build (tox deps)")
    setuptools = pytest.importorskip("setuptools", reason="needs setuptools>=77 (tox deps)")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"needs setuptools>=77 for the SPDX license (tox deps), found {setuptools.__version__}")
    source = tmp_path_factory.mktemp("source") / "loopback"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True, text=True, timeout=300, env=_outside_env(),
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    for line in (built.stdout + built.stderr).splitlines():  # e.g. "License classifiers are deprecated"
        assert "deprecat" not in line.lower() or "byte-compiling" in line, line
    return out


def test_sdist_carries_everything_the_suite_needs(dist: Path, tmp_path: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        if hasattr(tarfile, "data_filter"):  # 3.12+, and backported to 3.9.17+: no warning on 3.12+
            archive.extractall(tmp_path, filter="data")
        else:  # pragma: no cover
            archive.extractall(tmp_path)  # noqa: S202 - our own archive
    wanted = {"tox.ini", "setup.cfg", "pyproject.toml", "LICENSE", "README.md", "tests/conftest.py",
              "tests/interop/package.json", "tests/interop/ts_client.mjs", "tests/conformance/fixture.py",
              "tests/conformance/run.py", "examples/stand_in_agent.py", "benchmarks/bench.py", "loopback/py.typed"}
    assert wanted <= names, wanted - names
    assert not [n for n in names if "node_modules" in n or n.endswith(".pyc") or "__pycache__" in n]
    for folder in ("tests", "tests/unit", "tests/integration", "tests/corpus", "tests/agents", "examples",
                   "benchmarks"):  # every file of these folders
        for path in (ROOT / folder).iterdir():
            if path.is_file() and not path.name.endswith(".pyc"):
                assert f"{folder}/{path.name}" in names, f"{folder}/{path.name} is not in the sdist"
    # The suite runs from the unpacked sdist (a few test modules that lean on the corpus,
    # conftest.py and the examples; tox runs them all the same way).
    (unpacked,) = tmp_path.iterdir()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration/test_corpus.py",
         "tests/unit/test_demo.py", "tests/integration/test_packaging.py::test_metadata_lives_in_pyproject_only"],
        cwd=unpacked, capture_output=True, text=True, timeout=300, env=_outside_env(),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with nothing but the wheel installed (no index, no network)."""
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-index",
         "--no-deps", "--no-cache-dir", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=300, env=_outside_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


def test_wheel_console_script_says_loopback(installed: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(installed / "bin" / "loopback"), "--help"], cwd=tmp_path, env=_outside_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: loopback "), done.stdout[:200]


def test_wheel_imports_from_the_venv_and_ships_py_typed(installed: Path, tmp_path: Path) -> None:
    code = ("import json, os, loopback; print(json.dumps({'file': loopback.__file__, 'version': loopback.__version__,"
            " 'typed': os.path.isfile(os.path.join(os.path.dirname(loopback.__file__), 'py.typed'))}))")
    done = subprocess.run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, env=_outside_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["file"].startswith(str(installed)) and found["version"] == loopback.__version__
    assert found["typed"] is True


def test_wheel_serves_a_tool_call_end_to_end(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "mytools.py").write_text(TOOLS_FILE)
    proc = subprocess.Popen([str(installed / "bin" / "loopback"), "serve", "--tools", "mytools.py"], cwd=tmp_path,
                            env=_outside_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url, token = _banner(proc)
        assert _call(url, token, "shout", {"text": "hi"}) == {"content": [{"type": "text", "text": "HI"}],
                                                              "isError": False, "structuredContent": {"result": "HI"}}
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def _banner(proc: subprocess.Popen) -> tuple[str, str]:
    """URL and token from ``serve``'s banner (bounded: 20 s)."""
    import time

    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline and "Press Ctrl-C" not in text:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            break
        text += line
    url = re.search(r"MCP server on (http://127\.0\.0\.1:\d+/mcp)", text)
    token = re.search(r"^token: (\S+)$", text, re.M)
    assert url and token, text + (proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
    return url.group(1), token.group(1)


def _call(url: str, token: str, name: str, arguments: dict) -> dict:
    """One tools/call with urllib and every header a call needs (no initialize: the server allows it)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": name, "arguments": arguments}}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2025-11-25"})
    with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - 127.0.0.1 only
        return json.loads(response.read())["result"]


# -- vendored: copied into an application, or imported from a zip ------------------------------

VENDORED_HOST = """
import json, sys, urllib.request
sys.path.insert(0, {path!r})
from {package} import ensure, close, tool, __name__ as name

@tool
def shout(text: str) -> str:
    return text.upper()

server = ensure()
body = json.dumps({{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {{"name": "shout", "arguments": {{"text": "hi"}}}}}}).encode()
request = urllib.request.Request(server.url, data=body, headers={{
    "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
    "Authorization": "Bearer " + server.token}})
answer = json.loads(urllib.request.urlopen(request, timeout=20).read())
close()
print(json.dumps({{"name": name, "text": answer["result"]["content"][0]["text"],
                  "plain_loopback_loaded": "loopback" in sys.modules,
                  "file": sys.modules[name].__file__}}))
"""


def test_vendored_copy_serves_a_call_as_myapp_vendor_loopback(tmp_path: Path) -> None:
    vendor = tmp_path / "myapp" / "_vendor"
    shutil.copytree(PACKAGE, vendor / "loopback", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (vendor / "__init__.py").write_text("")
    script = VENDORED_HOST.format(path=str(tmp_path), package="myapp._vendor.loopback")
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found == {"name": "myapp._vendor.loopback", "text": "HI", "plain_loopback_loaded": False,
                     "file": str(vendor / "loopback" / "__init__.py")}


def test_package_imported_from_a_zip_serves_a_call(tmp_path: Path) -> None:
    archive = tmp_path / "loopback.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(PACKAGE.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zipped.write(path, Path("loopback") / path.relative_to(PACKAGE))
    script = VENDORED_HOST.format(path=str(archive), package="loopback")
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["text"] == "HI" and found["file"] == str(archive / "loopback" / "__init__.py")


# -- older interpreters: one clear ImportError -------------------------------------------------


def _old_pythons() -> list[str]:
    """Interpreters older than 3.9 on this machine (pyenv's, or python3.X on PATH)."""
    roots = {os.environ.get("PYENV_ROOT") or "", os.path.expanduser("~/.pyenv")} - {""}
    found = {}
    for root in roots:
        for exe in sorted(Path(root).glob("versions/3.[5-8].*/bin/python3.[5-8]")):
            found.setdefault(exe.name, str(exe))
    for minor in range(5, 9):
        exe = shutil.which(f"python3.{minor}")
        if exe and subprocess.run([exe, "-c", ""], capture_output=True, timeout=30).returncode == 0:
            found.setdefault(f"python3.{minor}", exe)
    return sorted(found.values())


@pytest.mark.parametrize("python", _old_pythons() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no Python older than 3.9 on this machine"))])
def test_an_older_python_gets_one_import_error_naming_the_version(python: str, tmp_path: Path) -> None:
    env = {**_outside_env(), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([python, "-c", "import loopback"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"ImportError: loopback needs Python 3\.9 or newer; this is Python 3\.[5-8]\.\d+ \(.+\)", last), done.stderr
    assert done.stderr.count("Traceback") == 1 and "During handling" not in done.stderr, done.stderr
