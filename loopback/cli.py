"""Command line: ``python -m loopback serve``.

Owns: argument parsing, loading the user's tool modules, printing the connection
details, and serving until Ctrl-C or SIGTERM.
Must not know: HTTP or MCP details.

Exit codes: 0 after a clean stop, 1 when the server cannot start or a tool module
cannot be loaded, 2 for a usage error (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

from . import __version__, lifecycle
from .server import LoopbackError
from .tools import ToolRegistry


class CliError(Exception):
    """A failure to report as one line and exit code 1."""


def _load_tools(specs: Sequence[str]) -> ToolRegistry:
    """Import each module name or ``.py`` file; their ``@loopback.tool`` functions fill the default registry."""
    for spec in specs:
        path = Path(spec)
        try:
            if spec.endswith(".py") or path.is_file():
                if not path.is_file():
                    raise CliError(f"tool file not found: {spec}")
                name = f"loopback_tools_{path.stem}"
                module_spec = importlib.util.spec_from_file_location(name, path)
                if module_spec is None or module_spec.loader is None:
                    raise CliError(f"cannot load tool file: {spec}")
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                module_spec.loader.exec_module(module)
            else:
                if "" not in sys.path and os.getcwd() not in sys.path:
                    sys.path.insert(0, os.getcwd())  # `--tools mytools` finds ./mytools.py as python -m does
                importlib.import_module(spec)
        except CliError:
            raise
        except Exception as exc:
            raise CliError(f"cannot import tools from {spec!r}: {type(exc).__name__}: {exc}") from None
    registry = lifecycle.default_registry()
    if not len(registry):
        raise CliError(f"no tools were registered by {', '.join(specs)} (decorate functions with @loopback.tool)")
    return registry


def _client_config(url: str, token: str) -> str:
    entry = {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}
    return json.dumps({"mcpServers": {"loopback": entry}}, indent=2)


def _serve(args: argparse.Namespace) -> int:
    if args.tools:
        registry = _load_tools(args.tools)
    else:
        from .demo import demo_registry

        registry = demo_registry()
    try:
        server = lifecycle.ensure(args.port, host=args.host, registry=registry)
    except (LoopbackError, ValueError) as exc:
        raise CliError(str(exc)) from None
    stop = threading.Event()
    # Handlers go in before the banner: a supervisor may signal as soon as it reads it.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        names = ", ".join(tool.name for tool in registry.tools())
        print(f"loopback {__version__}: MCP server on {server.url}")
        print(f"tools: {names}")
        print(f"token: {server.token}")
        print("client config (Claude Code: claude --mcp-config FILE):")
        print(_client_config(server.url, server.token))
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):  # a timed wait keeps Ctrl-C responsive
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        lifecycle.close()
    print("stopped", file=sys.stderr)
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loopback",
        description="A zero-dependency MCP server on 127.0.0.1 for the coding agents a Python host spawns.",
    )
    parser.add_argument("--version", action="version", version=f"loopback {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    serve = verbs.add_parser(
        "serve",
        help="serve tools until Ctrl-C",
        description="Serve MCP tools on 127.0.0.1 until Ctrl-C or SIGTERM; prints URL, token and a client config.",
    )
    serve.add_argument("--port", type=_port, default=None,
                       help="port to listen on (default: $LOOPBACK_PORT, else any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    serve.add_argument("--tools", action="append", metavar="MODULE_OR_FILE", default=[],
                       help="module name or .py file whose @loopback.tool functions to serve "
                            "(repeatable; default: the built-in demo tools)")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except CliError as exc:
        print(f"loopback: error: {exc}", file=sys.stderr)
        return 1
