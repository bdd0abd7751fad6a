"""Command line: ``python -m loopback serve | config | run | stdio``.

Owns: argument parsing, loading the user's tool modules, printing connection details,
the runtime file through which ``config`` and ``stdio`` find a ``serve`` running
elsewhere (trusted only when ``private.read_private`` accepts it and it names a loopback
URL), ``serve``'s clean stop on SIGINT, SIGTERM and SIGHUP, running one agent with a
per-run grant through ``PreparedRun.start`` (signals passed on, exit code passed back, a
failure hint printed), and starting the stdio bridge (``loopback.stdio``, imported only by
that verb) with the server it found.
Must not know: HTTP or MCP details, where run files go or how an agent is started
(``host``), which command lines take arguments (``clients``).

Exit codes:
  serve, config  0 on success; 1 when the server cannot start, a tool module cannot be
                 loaded, or ``config`` finds no running ``serve``; 2 for a usage error.
  stdio          0 when stdin ends (or on SIGINT/SIGTERM); 1 when no server is found;
                 2 for a usage error. Failures of single requests are JSON-RPC errors.
  run            the agent's own exit code, or 128+N when a signal N ended it; before the
                 agent starts: 1 (tools, server, grant or config could not be set up),
                 2 (usage), 126 (the agent is not executable), 127 (the agent is not found).
                 The agent's own 1, 2, 126 or 127 are told apart by the "loopback: error:"
                 line loopback prints for its own.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Optional, Sequence

from . import __version__, calllog, clients, lifecycle, private
from .callsinks import CALLS_LOGGER, StreamSink
from .clients import ClientConfig
from .admission import is_loopback_host
from .errors import LoopbackError
from .host import AgentProcess, prepare_agent_run
from .private import RUNTIME_DIR_ENV
from .server import LoopbackServer
from .settings import Settings
from .tools import ToolRegistry

_log = logging.getLogger("loopback")

# Agents whose executable name says which config format they read.
_AGENT_FORMATS = frozenset({"claude", "codex", "gemini", "opencode"})

EXIT_CODES = """\
exit codes:
  serve, config  0 success; 1 server cannot start, tools cannot load, or (config) no serve
                 is running; 2 usage error
  run            the agent's exit code (128+N if signal N ended it); before the agent
                 starts: 1 setup failed, 2 usage error, 126 agent not executable,
                 127 agent not found
  stdio          0 when stdin ends; 1 no server found; 2 usage error
"""

SERVE_DESCRIPTION = """\
Serve MCP tools on 127.0.0.1 until Ctrl-C, SIGTERM or SIGHUP; print the URL, the token,
and a client config with the environment it needs, then one line per request on stderr
(who, what, outcome, duration, bytes; --quiet turns them off). A runtime file
($LOOPBACK_RUNTIME_DIR, else $XDG_RUNTIME_DIR/loopback, else ~/.cache/loopback; mode 0600
in a 0700 directory) lets `config` find this server; it is removed on exit.
"""

CONFIG_DESCRIPTION = """\
Print the client config for the newest `serve` running for this user (found through
its runtime file): the config alone on stdout, and on stderr the `export` lines of the
environment it refers to, as shell comments and commands. Only a runtime file of this
user's, mode 0600, in a 0700 directory of this user's, naming a loopback URL, is read;
any other is ignored with a warning.

examples:
  python -m loopback config --format claude > mcp.json
  eval "$(python -m loopback config --format claude 2>&1 >mcp.json)"
"""

STDIO_DESCRIPTION = """\
A stdio MCP server for clients that launch only stdio servers (Claude Desktop, some IDE
plugins): each message on stdin goes to a running loopback server over Streamable HTTP,
and everything the server sends comes back on stdout, one JSON-RPC message a line; logs
go to stderr. The server is the newest running `serve` found through its runtime file
(its URL and token), or --url URL with the token in $LOOPBACK_TOKEN. When stdin ends the
session is deleted and the bridge exits 0.

`python -m loopback config --format claude-desktop` prints the entry that starts it.
"""

RUN_DESCRIPTION = """\
Run one agent with the tools: start the server, mint a token for this run alone, write
the agent's config (mode 0600, in a fresh 0700 directory in the runtime directory, or in
--config-dir) and run AGENT with it. Afterwards the agent's process group is ended, the
token revoked, the config deleted and the server stopped; a table of the calls, errors and
durations per tool is printed on stderr (--no-summary skips it).

In ARGS, {mcp_config} becomes the config path and {mcp_args} the format's own
arguments. With neither, those arguments go right after AGENT (claude: --mcp-config
FILE --allowedTools mcp__NAME --strict-mcp-config; codex: -c mcp_servers.NAME...
overrides), but only where the agent starts a session: `claude mcp list` or
`codex mcp list` get the environment alone. The token, header values and, for gemini
and opencode, the config path reach the agent in its environment. `codex exec` gets
its standard input closed. SIGINT and SIGTERM are passed on to the agent (Ctrl-C in a
terminal reaches it directly, once). A one-line hint follows an agent that failed the
way an untrusted folder (gemini, exit 55) or an unapproved project .mcp.json (claude)
makes it fail.

examples:
  python -m loopback run --tools mytools.py -- claude -p "Summarise order A-17"
  python -m loopback run --tools mytools.py -- codex exec "Summarise order A-17"
  python -m loopback run --header 'X-Session-Key: s-1' -- python agent.py {mcp_config}
"""


class CliError(LoopbackError):
    """A failure to report as one line on stderr and an exit code (1 unless given)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --- tools ------------------------------------------------------------------------------


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


def _registry(specs: Sequence[str]) -> ToolRegistry:
    if specs:
        return _load_tools(specs)
    from .demo import demo_registry

    return demo_registry()


def _start(port: Optional[int], host: str, registry: ToolRegistry, audit: Optional[str] = None,
           stats: bool = False) -> LoopbackServer:
    # A port named on the command line is meant: taken is an error, not a move elsewhere.
    try:
        settings = Settings(port_fallback=not port, audit_path=audit, stats=stats) if port or audit or stats else None
        return lifecycle.ensure(port, host=host, registry=registry, settings=settings)
    except (LoopbackError, ValueError) as exc:
        raise CliError(str(exc)) from None


# --- connection notes -------------------------------------------------------------------


def _notes(config: ClientConfig) -> list[str]:
    """Shell lines that go with a config: comments, and ``export`` lines for the variables it
    refers to, so they can be pasted into (or ``eval``-ed by) the agent's shell."""
    lines = [f"# {clients.describe(config.format)}"]
    if config.env:
        lines.append("# the config reads these from the agent's environment:")
        lines += [f"export {name}={shlex.quote(value)}" for name, value in config.env.items()]
    if config.config_env is not None:
        lines.append(f"# export {config.config_env}=FILE  (FILE: where you save the config)")
    if config.args:
        lines.append(f"# agent arguments: {shlex.join(config.args_for('FILE'))}")
    return lines


def _curl_lines(server: LoopbackServer, demo: bool, config: ClientConfig) -> list[str]:
    """A ready-to-paste curl call: ``add`` of the demo tools, else ``tools/list``."""
    from .protocol import LATEST_VERSION

    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    if demo:
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}
    lines = ["# try it with curl (no initialize needed):"]
    if clients.TOKEN_ENV not in config.env:
        lines.append(f"export {clients.TOKEN_ENV}={shlex.quote(server.token)}")
    lines.append(clients.curl_command(server.url, LATEST_VERSION, message))
    return lines


def _render(format: str, url: str, token: str, name: str = "loopback") -> ClientConfig:
    try:
        return clients.render(format, url, token, name=name)
    except ValueError as exc:
        raise CliError(str(exc)) from None


# --- the runtime file -------------------------------------------------------------------


def runtime_dir() -> Path:
    """Where ``serve`` announces itself to ``config`` (``private.runtime_dir``)."""
    return private.runtime_dir()


def _write_runtime_file(server: LoopbackServer) -> Optional[Path]:
    """Announce this serve (it holds the token: 0600, and complete or absent, never partial)."""
    record = {
        "pid": os.getpid(),
        "url": server.url,
        "port": server.port,
        "token": server.token,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    directory = runtime_dir()
    try:
        private.private_dir(directory)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".serve-", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(record, file)
            path = directory / f"serve-{os.getpid()}.json"
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as exc:
        _log.warning("cannot write the runtime file in %s (%s): `loopback config` will not find this server",
                     directory, exc)
        return None
    return path


@dataclass(frozen=True)
class _Served:
    pid: int
    url: str
    token: str
    started: datetime.datetime


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _loopback_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme == "http" and parts.hostname is not None and is_loopback_host(parts.hostname)
    except ValueError:
        return False


def _read_runtime_file(path: Path) -> Optional[_Served]:
    """The serve a runtime file names, if the file can be trusted: this user's, 0600, in a
    0700 directory of this user's, naming a loopback URL. Else None, with a warning."""
    try:
        text = private.read_private(path)
    except private.PrivacyError as exc:
        _log.warning("ignoring runtime file %s: %s", path, exc)
        return None
    except OSError as exc:
        _log.debug("ignoring runtime file %s: %s", path, exc)
        return None
    try:
        record = json.loads(text)
        pid, url, token = record["pid"], record["url"], record["token"]
        started = datetime.datetime.fromisoformat(record["started"])
    except (ValueError, KeyError, TypeError) as exc:
        _log.debug("ignoring runtime file %s: %s", path, exc)
        return None
    if type(pid) is not int or pid <= 0 or not isinstance(url, str) or not isinstance(token, str):
        _log.debug("ignoring runtime file %s: unexpected content", path)
        return None
    if not _loopback_url(url):
        _log.warning("ignoring runtime file %s: %r is not a loopback http URL", path, url)
        return None
    return _Served(pid, url, token, started)


def _find_served() -> Optional[_Served]:
    """The newest ``serve`` whose process lives; (trusted) files of dead ones are removed."""
    live = []
    for path in runtime_dir().glob("serve-*.json"):
        served = _read_runtime_file(path)
        if served is None:
            continue
        if not _alive(served.pid):
            path.unlink(missing_ok=True)
            continue
        live.append(served)
    return max(live, key=lambda served: served.started, default=None)


# --- serve ------------------------------------------------------------------------------


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _serve(args: argparse.Namespace) -> int:
    registry = _registry(args.tools)
    server = _start(args.port, args.host, registry, args.audit)
    config = _render(args.format, server.url, server.token)
    calls_logger = logging.getLogger(CALLS_LOGGER)
    calls_level = calls_logger.level
    if not args.quiet:
        # One readable line per call on stderr; the logger would say the same again.
        server.add_call_sink(StreamSink(sys.stderr))
        calls_logger.setLevel(logging.WARNING)
    stop = threading.Event()
    # Handlers go in before the banner: a supervisor may signal as soon as it reads it.
    # SIGHUP (the terminal closed) stops it cleanly too, runtime file removed.
    previous = {signum: signal.signal(signum, lambda signum, frame: stop.set())
                for signum in _STOP_SIGNALS}
    runtime_file = _write_runtime_file(server)
    try:
        names = ", ".join(tool.name for tool in registry.tools())
        print(f"loopback {__version__}: MCP server on {server.url}")
        print(f"tools: {names}")
        print(f"token: {server.token}")
        print(f"client config for {config.format} (save it as FILE, e.g. {config.filename}):")
        print(config.text)  # the text ends in a newline: a blank line closes the block
        print("\n".join(_notes(config)))
        print("\n".join(_curl_lines(server, not args.tools, config)))
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):  # a timed wait keeps Ctrl-C responsive
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if runtime_file is not None:
            runtime_file.unlink(missing_ok=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        lifecycle.close()
        calls_logger.setLevel(calls_level)
    print("stopped", file=sys.stderr)
    return 0


# --- config -----------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> int:
    served = _find_served()
    if served is None:
        raise CliError(f"no running `python -m loopback serve` found (looked in {runtime_dir()})")
    if args.format in clients.STDIO_FORMATS:
        # The bridge finds the serve itself each time the client starts it: no token in
        # the file, and a restarted serve (new port, new token) is found again.
        config = clients.render_stdio_discovery(args.format, runtime_dir=str(runtime_dir().resolve()),
                                                name=args.name)
    else:
        config = _render(args.format, served.url, served.token, args.name)
    # The config alone on stdout, so that `... config --format F > FILE` writes the file.
    sys.stdout.write(config.text)
    print("\n".join(_notes(config)), file=sys.stderr)
    return 0


# --- stdio ------------------------------------------------------------------------------


def _stdio(args: argparse.Namespace) -> int:
    from . import stdio

    token_env = args.token_env
    if args.url is not None:
        url, token = args.url, os.environ.get(token_env) or None
        if token is None:
            _log.warning("%s is not set: the server will refuse every request", token_env)
            hint = f": {token_env} is not set; set it to the server's token"
        else:
            hint = f": {token_env} does not hold this server's token"
    else:
        served = _find_served()
        if served is None:
            raise CliError(f"no running `python -m loopback serve` found (looked in {runtime_dir()}); "
                           f"start one, or give --url URL with the token in ${token_env}")
        url, token = served.url, served.token
        hint = "; the serve found through its runtime file no longer takes its token (did it restart?)"

        def locate() -> Optional[tuple[str, Optional[str]]]:  # a serve restarted: its new URL and token
            found = _find_served()
            return (found.url, found.token) if found is not None else None
    try:
        headers = stdio.parse_headers(args.header, os.environ, clients.header_env_name)
        bridge = stdio.Bridge(url, token, stdin=sys.stdin.buffer, stdout=sys.stdout.buffer,
                              headers=headers, token_hint=hint, locate=None if args.url else locate)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    _log.info("stdio bridge to %s", url)

    stopping = threading.Event()

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        if not stopping.is_set():  # once: a second signal must not cut the DELETE short
            stopping.set()
            raise KeyboardInterrupt  # ends the bridge's read of stdin; it then ends the session

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return bridge.run()
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- run --------------------------------------------------------------------------------


def _in_terminal_foreground() -> bool:
    """Whether this process group is the foreground job of its terminal."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


class _SignalForwarder:
    """Passes SIGINT and SIGTERM on to the agent while ``run`` waits for it.

    A signal that comes before the agent is started is remembered (``received``) and the
    agent is not started; one that comes while it starts reaches it once it has. A SIGINT
    while ``run`` is its terminal's foreground job is Ctrl-C, which the terminal has sent to
    the agent too (it shares our process group): passing it on would deliver it twice, and
    some agents take a second Ctrl-C as "quit now".
    """

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._child: Optional[AgentProcess] = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_SignalForwarder":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self._child is None:
            self.received = signum
        else:
            self._forward(self._child, signum)

    @staticmethod
    def _forward(child: AgentProcess, signum: int) -> None:
        if signum == signal.SIGINT and not child.own_group and _in_terminal_foreground():
            return
        child.send_signal(signum)  # to its process group when it has one of its own

    def wait(self, child: AgentProcess) -> int:
        """Forward signals to ``child`` until it exits; its exit code, 128+N for signal N."""
        self._child = child
        if self.received is not None:
            self._forward(child, self.received)
        code = child.wait()
        return 128 - code if code < 0 else code


def _check_agent(name: str) -> None:
    if shutil.which(name) is None:
        if os.sep in name and os.path.exists(name):
            raise CliError(f"the agent is not executable: {name}", 126)
        raise CliError(f"agent not found: {name} (not a file, nor on PATH)", 127)


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', not {text!r}")
    return name.strip(), value.strip()


def _run(args: argparse.Namespace) -> int:
    _check_agent(args.agent[0])
    executable_name = Path(args.agent[0]).name
    config_format = args.format or (executable_name if executable_name in _AGENT_FORMATS else "generic")
    with _SignalForwarder() as forwarder:
        try:
            registry = _registry(args.tools)
            unknown = sorted(set(args.allow) - {tool.name for tool in registry.tools()})
            if unknown:
                raise CliError(f"--allow names no tool: {', '.join(unknown)}")
            server = _start(args.port, "127.0.0.1", registry, stats=not args.no_summary)
            try:
                prepared = prepare_agent_run(
                    True, format=config_format, headers=dict(args.header) or None, owner=not args.no_owner,
                    tools=args.allow or None, name=args.name, directory=args.config_dir, audit=args.audit,
                )
            except ValueError as exc:
                raise CliError(str(exc)) from None
            with prepared:
                if not prepared.enabled:
                    raise CliError(prepared.warning or "MCP is not available")
                _log.info("agent run: format %s, config %s", config_format, prepared.config_path)
                if forwarder.received is not None:
                    return 128 + forwarder.received
                # In the terminal's foreground the agent stays in our process group: it may read
                # the terminal, and Ctrl-C reaches it there. Elsewhere it gets a group of its own,
                # ended with the run.
                try:
                    child = prepared.start(args.agent, new_session=not _in_terminal_foreground())
                except OSError as exc:
                    code = 127 if isinstance(exc, FileNotFoundError) else 126
                    raise CliError(f"cannot run the agent {args.agent[0]}: {exc.strerror or exc}", code) from None
                started = time.monotonic()
                code = forwarder.wait(child)
                if child.hint is not None:
                    print(f"loopback: hint: {child.hint}", file=sys.stderr)
                if not args.no_summary:
                    print(calllog.format_summary(server.stats(), time.monotonic() - started), file=sys.stderr)
                return code
        finally:
            lifecycle.close()


# --- parsing ----------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _level(text: str) -> int:
    level = logging.getLevelName(text.upper())
    if not isinstance(level, int):
        raise argparse.ArgumentTypeError(f"not a log level: {text!r} (debug, info, warning, error)")
    return level


def _formats_help() -> str:
    return "\n".join(f"  {format:14} {clients.describe(format)}" for format in clients.FORMATS)


def _prog() -> str:
    """``loopback`` when run as the console script, else ``python -m loopback``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name and name not in ("__main__.py", "-c", "-m") and not name.endswith(".py") else "python -m loopback"


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="A zero-dependency MCP server on 127.0.0.1 for the coding agents a Python host spawns.",
        epilog=EXIT_CODES, formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"loopback {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    parser.add_argument("--log-level", type=_level, default=None, metavar="LEVEL",
                        help="level of loopback's own log on stderr: debug, info, warning (default), error")
    # Also accepted after the verb; SUPPRESS keeps a count given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log more (-v info, -vv debug)")
    common.add_argument("--log-level", type=_level, default=argparse.SUPPRESS, metavar="LEVEL",
                        help="level of loopback's own log on stderr: debug, info, warning (default), error")
    tools = argparse.ArgumentParser(add_help=False)
    tools.add_argument("--tools", action="append", metavar="MODULE_OR_FILE", default=[],
                       help="module name or .py file whose @loopback.tool functions to serve "
                            "(repeatable; default: the built-in demo tools)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    serve = verbs.add_parser(
        "serve", parents=[common, tools], formatter_class=formatter, help="serve tools until Ctrl-C",
        description=SERVE_DESCRIPTION,
        epilog=f"formats:\n{_formats_help()}\n\n{EXIT_CODES}",
    )
    serve.add_argument("--port", type=_port, default=None,
                       help="port to listen on; taken is an error (default: $LOOPBACK_PORT, falling back "
                            "to a free port if that is taken, else any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    serve.add_argument("--format", choices=clients.FORMATS, default="claude", metavar="FORMAT",
                       help="client config to print (default claude)")
    serve.add_argument("-q", "--quiet", action="store_true",
                       help="print no line per call on stderr (by default one per request: time, who, "
                            "what, outcome, duration, bytes, protocol revision)")
    serve.add_argument("--audit", default=None, metavar="FILE",
                       help="append one JSON line per request to FILE (created 0600, rotated at 10 MiB, "
                            "5 kept); no token, argument or result is written")
    serve.set_defaults(run=_serve)

    config = verbs.add_parser(
        "config", parents=[common], formatter_class=formatter,
        help="print the client config for a running serve",
        description=CONFIG_DESCRIPTION,
        epilog=f"formats:\n{_formats_help()}\n\n{EXIT_CODES}",
    )
    config.add_argument("--format", choices=clients.FORMATS, required=True, metavar="FORMAT", help="the agent's config format")
    config.add_argument("--name", default="loopback", help="server name in the config (default loopback)")
    config.set_defaults(run=_config)

    run = verbs.add_parser(
        "run", parents=[common, tools], formatter_class=formatter,
        help="run one agent with the tools",
        usage="python -m loopback run [options] -- AGENT [ARGS...]",
        description=RUN_DESCRIPTION,
        epilog=f"formats:\n{_formats_help()}\n\n{EXIT_CODES}",
    )
    run.add_argument("--format", choices=clients.FORMATS, default=None, metavar="FORMAT",
                     help="the agent's config format (default: AGENT's name if it is claude, codex, gemini "
                          "or opencode, else generic)")
    run.add_argument("--port", type=_port, default=None,
                     help="port to listen on; taken is an error (default: $LOOPBACK_PORT, else any free port)")
    run.add_argument("--header", type=_header, action="append", default=[], metavar="'NAME: VALUE'",
                     help="a header bound to this run's token (tools see it whatever a request claims) "
                          "and sent by the agent; repeatable")
    run.add_argument("--no-owner", action="store_true", help="hide tools registered with owner_only=True")
    run.add_argument("--allow", action="append", default=[], metavar="TOOL",
                     help="let the agent list and call only this tool; repeatable (default: every tool)")
    run.add_argument("--name", default="loopback", help="server name in the config (default loopback)")
    run.add_argument("--config-dir", default=None, metavar="DIR",
                     help="write the agent's config into DIR (it must exist and be private: no component "
                          "writable by others; for gemini none group- or world-writable) instead of a fresh "
                          "directory in the runtime directory")
    run.add_argument("--audit", default=None, metavar="FILE",
                     help="append one JSON line per request of this run to FILE (created 0600, rotated at "
                          "10 MiB)")
    run.add_argument("--no-summary", action="store_true",
                     help="print no table of calls, errors and durations per tool when the agent exits")
    run.add_argument("agent", nargs="+", metavar="AGENT [ARGS...]", help="the agent's command line, after --")
    run.set_defaults(run=_run)

    bridge = verbs.add_parser(
        "stdio", parents=[common], formatter_class=formatter,
        help="a stdio MCP server that forwards to a running loopback server",
        description=STDIO_DESCRIPTION, epilog=EXIT_CODES,
    )
    bridge.add_argument("--url", default=None,
                        help="the server's MCP URL (default: the newest running serve, from its runtime file)")
    bridge.add_argument("--token-env", default=clients.TOKEN_ENV, metavar="NAME",
                        help=f"environment variable that holds the token with --url (default {clients.TOKEN_ENV})")
    bridge.add_argument("--header", action="append", default=[], metavar="NAME[: VALUE]",
                        help="a header to send with every request: 'Name: value', or Name alone to read the "
                             "value from $LOOPBACK_HEADER_<NAME>; repeatable")
    bridge.set_defaults(run=_stdio)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    level = args.log_level if args.log_level is not None else {0: logging.WARNING, 1: logging.INFO}.get(
        args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except CliError as exc:
        print(f"loopback: error: {exc}", file=sys.stderr)
        return exc.code
    except Exception as exc:  # unforeseen (a bug, an interpreter's difference): still one line
        _log.debug("unexpected error", exc_info=True)  # the traceback, with -vv
        print(f"loopback: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
