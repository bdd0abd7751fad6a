"""The conformance fixture: a loopback server exposing what the official MCP conformance
suite's server scenarios call (``@modelcontextprotocol/conformance``).

    python tests/conformance/fixture.py [--port N] [--stateless]

Prints the MCP URL on stdout once listening; stops on SIGTERM/SIGINT. Built only with
loopback's public API; the one difference from a real server is ``Settings(auth=False)``
(the suite sends no Authorization header), an opt-in that logs a warning.

What each name below answers to is fixed by the suite's scenario source
(``src/scenarios/server/*.ts`` and ``examples/servers/typescript/everything-server.ts``
of ``modelcontextprotocol/conformance``): tool names, argument names, resource URIs and
prompt names must match it exactly. Test-only: not part of the package.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

import loopback  # noqa: E402
from loopback import Audio, Context, EmbeddedResource, Image, Text  # noqa: E402

# A 1x1 red PNG and a minimal WAV, as the suite's reference server sends them.
IMAGE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
AUDIO = base64.b64decode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=")

# SEP-1613/SEP-2106: a raw JSON Schema 2020-12 input schema whose keywords ($schema,
# $defs with an $anchor, additionalProperties, allOf/anyOf, if/then/else) must reach
# tools/list unchanged.
JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {"$anchor": "addressDef", "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}}},
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

MISSING: list[str] = []  # public API names this checkout lacks (reported on stderr)


def _api(name: str) -> Any:
    """A public loopback name, or None (noted in MISSING) while the feature is not built yet."""
    try:
        return getattr(loopback, name)
    except AttributeError:
        MISSING.append(name)
        return None


ClientRequestError = _api("ClientRequestError") or Exception


# -- tools (2025-11-25 era) ---------------------------------------------------------

tool = loopback.tool


@tool
def test_simple_text() -> str:
    """Tests simple text content response"""
    return "This is a simple text response for testing."


@tool
def test_image_content() -> Image:
    """Tests image content response"""
    return Image(IMAGE, "image/png")


@tool
def test_audio_content() -> Audio:
    """Tests audio content response"""
    return Audio(AUDIO, "audio/wav")


@tool
def test_embedded_resource() -> EmbeddedResource:
    """Tests embedded resource content response"""
    return EmbeddedResource("test://embedded-resource", text="This is an embedded resource content.",
                            mime_type="text/plain")


@tool
def test_multiple_content_types() -> list:
    """Tests response with multiple content types (text, image, resource)"""
    return [
        Text("Multiple content types test:"),
        Image(IMAGE, "image/png"),
        EmbeddedResource("test://mixed-content-resource", text=json.dumps({"test": "data", "value": 123}),
                         mime_type="application/json"),
    ]


@tool
def test_tool_with_logging(ctx: Context) -> str:
    """Tests tool that emits log messages during execution"""
    for step, message in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if step:
            time.sleep(0.05)
        ctx.log("info", message)
    return "Tool with logging executed successfully"


@tool
def test_tool_with_progress(ctx: Context) -> str:
    """Tests tool that reports progress notifications"""
    for step, done in enumerate((0, 50, 100)):
        if step:
            time.sleep(0.05)
        ctx.progress(done, 100, f"Completed step {done} of 100")
    return "Progress reported: 0, 50, 100 of 100"


@tool
def test_error_handling() -> str:
    """Tests error response handling"""
    raise RuntimeError("This tool intentionally returns an error for testing")


@tool
def test_reconnection(ctx: Context) -> str:
    """Tests SSE stream disconnection and client reconnection (SEP-1699): the server closes
    the stream mid-call and sends the result after the client reconnects."""
    ctx.close_stream()
    time.sleep(0.1)
    return ("Reconnection test completed successfully. If you received this, the client properly "
            "reconnected after stream closure.")


@tool
def test_sampling(prompt: str, ctx: Context) -> str:
    """Tests server-initiated sampling (LLM completion request)

    Args:
        prompt: The prompt to send to the LLM
    """
    try:
        result = ctx.sample([{"role": "user", "content": {"type": "text", "text": prompt}}], max_tokens=100)
    except ClientRequestError as exc:
        return f"Sampling not supported or error: {exc}"
    content = result.get("content")
    text = content.get("text") if isinstance(content, dict) else None
    return f"LLM response: {text or 'No response'}"


def _elicit(ctx: Context, message: str, schema: dict[str, Any], label: str) -> str:
    try:
        result = ctx.elicit(message, schema)
    except ClientRequestError as exc:
        return f"Elicitation not supported or error: {exc}"
    return f"{label}: action={result.get('action')}, content={json.dumps(result.get('content') or {})}"


@tool
def test_elicitation(message: str, ctx: Context) -> str:
    """Tests server-initiated elicitation (user input request)

    Args:
        message: The message to show the user
    """
    schema = {"type": "object", "properties": {"response": {"type": "string", "description": "User's response"}},
              "required": ["response"]}
    return _elicit(ctx, message, schema, "User response")


@tool
def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Tests elicitation with default values per SEP-1034"""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"],
                       "default": "active"},
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": [],
    }
    return _elicit(ctx, "Please review and update the form fields with defaults", schema, "Elicitation completed")


@tool
def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Tests elicitation with enum schema improvements per SEP-1330"""
    def titled(prefix: str, word: str) -> list[dict[str, str]]:
        return [{"const": f"{prefix}{n}", "title": f"{t} {word}"} for n, t in ((1, "First"), (2, "Second"), (3, "Third"))]

    options = ["option1", "option2", "option3"]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "description": "Select one option", "enum": options},
            "titledSingle": {"type": "string", "description": "Select one option with titles",
                             "oneOf": titled("value", "Option")},
            "legacyEnum": {"type": "string", "description": "Select one option (legacy)",
                           "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3,
                              "items": {"type": "string", "enum": options}},
            "titledMulti": {"type": "array", "description": "Select multiple options with titles", "minItems": 1,
                            "maxItems": 3, "items": {"anyOf": titled("value", "Choice")}},
        },
        "required": [],
    }
    return _elicit(ctx, "Please select options from the enum fields", schema, "Elicitation completed")


def json_schema_2020_12_tool(ctx: Context, **arguments: Any) -> str:
    """Tool with JSON Schema 2020-12 features"""
    return f"JSON Schema 2020-12 tool called with: {json.dumps(arguments)}"


tool(json_schema_2020_12_tool, input_schema=JSON_SCHEMA_2020_12)


# -- tools the 2026-07-28 scenarios call (server-stateless) ---------------------------

@tool
def test_logging_tool(ctx: Context) -> str:
    """Logs at info level: sent only when the request's _meta asked for a log level"""
    ctx.log("info", "test_logging_tool ran")
    return "logged"


@tool
def test_missing_capability(ctx: Context) -> str:
    """Needs the client's sampling capability: undeclared, the server answers -32021"""
    result = ctx.sample("Say hello", max_tokens=10)
    return f"sampled: {json.dumps(result)}"


@tool
def test_trigger_tool_change() -> str:
    """Adds or removes a tool, so the tool list changes"""
    registry = loopback.default_registry()
    if not registry.remove("test_dynamic_tool"):
        registry.add(_dynamic_tool, name="test_dynamic_tool")
    return "tool list changed"


def _dynamic_tool() -> str:
    """A tool that test_trigger_tool_change adds and removes"""
    return "dynamic"


_prompt_toggle = threading.Lock()
_dynamic_prompt_on = False


@tool
def test_trigger_prompt_change() -> str:
    """Adds or removes a prompt, so the prompt list changes"""
    global _dynamic_prompt_on
    prompts = getattr(loopback.default_registry(), "prompts", None)
    if prompts is None or prompt is None:
        raise RuntimeError("prompts are not available in this build of loopback")
    with _prompt_toggle:
        if _dynamic_prompt_on and hasattr(prompts, "remove"):
            prompts.remove("test_dynamic_prompt")
        else:
            prompt("test_dynamic_prompt", description="Added by test_trigger_prompt_change")(_dynamic_prompt)
        _dynamic_prompt_on = not _dynamic_prompt_on
    return "prompt list changed"


def _dynamic_prompt() -> str:
    return "A prompt added at run time."


# -- input-required results (2026-07-28, SEP-2322) -----------------------------------
# Proposed API (not in the shared contract yet): a tool or prompt returns
# loopback.InputRequired(requests, state=None) to ask the client for input; the retry's
# answers arrive as ctx.input_responses (dict key -> result) and ctx.request_state. The
# fixture signs its own state, so a tampered one is refused whatever the server does.

InputRequired = _api("InputRequired")
_STATE_KEY = secrets.token_bytes(32)


def _sign(state: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(state, sort_keys=True).encode()).decode()
    mac = hmac.new(_STATE_KEY, body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def _verify(token: Optional[str]) -> Optional[dict[str, Any]]:
    if not isinstance(token, str) or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    if not hmac.compare_digest(mac, hmac.new(_STATE_KEY, body.encode(), hashlib.sha256).hexdigest()):
        raise ValueError("requestState failed its integrity check")
    return json.loads(base64.urlsafe_b64decode(body))


def _elicitation(message: str, field: str, kind: str = "string") -> dict[str, Any]:
    return {"method": "elicitation/create", "params": {
        "message": message,
        "requestedSchema": {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}}}


def _sampling(text: str, max_tokens: int) -> dict[str, Any]:
    return {"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}], "maxTokens": max_tokens}}


_ROOTS = {"method": "roots/list", "params": {}}


def _answers(ctx: Context, *keys: str) -> Optional[dict[str, dict[str, Any]]]:
    """The client's answers for ``keys`` (each an object), or None when any is missing."""
    responses = getattr(ctx, "input_responses", None) or {}
    if not isinstance(responses, dict):
        raise ValueError("inputResponses must be an object")
    found = {key: responses.get(key) for key in keys}
    if any(not isinstance(value, dict) for value in found.values()):
        return None
    return found  # type: ignore[return-value]


def _elicited(answer: dict[str, Any], field: str) -> Any:
    return (answer.get("content") or {}).get(field)


if InputRequired is not None:
    @tool
    def test_input_required_result_elicitation(ctx: Context) -> Any:
        """Asks for the user's name through an input-required result"""
        got = _answers(ctx, "user_name")
        if got is None:
            return InputRequired({"user_name": _elicitation("What is your name?", "name")})
        return f"Hello, {_elicited(got['user_name'], 'name')}!"

    @tool
    def test_input_required_result_sampling(ctx: Context) -> Any:
        """Asks the client's model a question through an input-required result"""
        got = _answers(ctx, "capital_question")
        if got is None:
            return InputRequired({"capital_question": _sampling("What is the capital of France?", 100)})
        content = got["capital_question"].get("content") or {}
        return f"The model answered: {content.get('text') if isinstance(content, dict) else content}"

    @tool
    def test_input_required_result_list_roots(ctx: Context) -> Any:
        """Asks for the client's roots through an input-required result"""
        got = _answers(ctx, "client_roots")
        if got is None:
            return InputRequired({"client_roots": _ROOTS})
        roots = got["client_roots"].get("roots") or []
        return "Roots: " + ", ".join(str(root.get("uri")) for root in roots if isinstance(root, dict))

    @tool
    def test_input_required_result_request_state(ctx: Context) -> Any:
        """Round-trips a signed requestState"""
        state = _verify(getattr(ctx, "request_state", None))
        got = _answers(ctx, "confirm")
        if got is None or state is None or state.get("step") != "confirm":
            return InputRequired({"confirm": _elicitation("Please confirm", "ok", "boolean")},
                                 state=_sign({"step": "confirm"}))
        return f"state-ok: confirmed={_elicited(got['confirm'], 'ok')}"

    @tool
    def test_input_required_result_tampered_state(ctx: Context) -> Any:
        """Refuses a requestState that fails its integrity check"""
        state = _verify(getattr(ctx, "request_state", None))  # raises on tampering
        got = _answers(ctx, "confirm")
        if got is None or state is None:
            return InputRequired({"confirm": _elicitation("Please confirm", "ok", "boolean")},
                                 state=_sign({"step": "confirm"}))
        return "state-ok"

    @tool
    def test_input_required_result_multiple_inputs(ctx: Context) -> Any:
        """Asks for an elicitation, a sampling and the roots at once"""
        state = _verify(getattr(ctx, "request_state", None))
        got = _answers(ctx, "user_name", "greeting", "client_roots")
        if got is None or state is None:
            return InputRequired({
                "user_name": _elicitation("What is your name?", "name"),
                "greeting": _sampling("Generate a greeting", 50),
                "client_roots": _ROOTS,
            }, state=_sign({"step": "all"}))
        return f"Got all three inputs for {_elicited(got['user_name'], 'name')}"

    @tool
    def test_input_required_result_multi_round(ctx: Context) -> Any:
        """Two rounds of elicitation, the state growing between them"""
        state = _verify(getattr(ctx, "request_state", None)) or {}
        if state.get("round") == 2:
            got = _answers(ctx, "step2")
            if got is not None:
                return f"{state.get('name')} likes {_elicited(got['step2'], 'color')}"
            return InputRequired({"step2": _elicitation("Step 2: What is your favorite color?", "color")},
                                 state=_sign(state))
        got = _answers(ctx, "step1")
        if got is not None and state.get("round") == 1:
            return InputRequired({"step2": _elicitation("Step 2: What is your favorite color?", "color")},
                                 state=_sign({"round": 2, "name": _elicited(got["step1"], "name")}))
        return InputRequired({"step1": _elicitation("Step 1: What is your name?", "name")},
                             state=_sign({"round": 1}))

    @tool
    def test_input_required_result_capabilities(ctx: Context) -> Any:
        """Asks only for what the client declared it can do"""
        capabilities = getattr(ctx, "client_capabilities", None) or {}
        wanted = {"greeting": _sampling("Generate a greeting", 50),
                  "user_name": _elicitation("What is your name?", "name"),
                  "client_roots": _ROOTS}
        needs = {"greeting": "sampling", "user_name": "elicitation", "client_roots": "roots"}
        requests = {key: request for key, request in wanted.items() if needs[key] in capabilities}
        got = _answers(ctx, *requests)
        if got is None or not requests:
            return InputRequired(requests)
        return "Got the inputs the client can give"

    @tool
    def test_streaming_elicitation(ctx: Context) -> Any:
        """Asks for input in the 2026-07-28 way: an input-required result, never a request on the stream"""
        ctx.progress(1, 2, "asking")
        got = _answers(ctx, "answer")
        if got is None:
            return InputRequired({"answer": _elicitation("Anything to add?", "text")})
        return "thanks"


# -- resources, templates, prompts, completions (helper B's decorators) -----------------

resource = _api("resource")
prompt = _api("prompt")
completion = _api("completion")
Message = _api("Message")

if resource is not None:
    @resource("test://static-text", name="static-text", title="Static Text Resource",
              description="A static text resource for testing", mime_type="text/plain")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @resource("test://static-binary", name="static-binary", title="Static Binary Resource",
              description="A static binary resource (image) for testing", mime_type="image/png")
    def static_binary() -> bytes:
        return IMAGE

    @resource("test://template/{id}/data", name="template", title="Resource Template",
              description="A resource template with parameter substitution", mime_type="application/json")
    def template(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @resource("test://watched-resource", name="watched-resource", title="Watched Resource",
              description="A resource that can be subscribed to", mime_type="text/plain")
    def watched_resource() -> str:
        return "Watched resource content"

if prompt is not None:
    @prompt("test_simple_prompt", title="Simple Test Prompt", description="A simple prompt without arguments")
    def simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @prompt("test_prompt_with_arguments", title="Prompt With Arguments", description="A prompt with required arguments")
    def prompt_with_arguments(arg1: str, arg2: str) -> str:
        """A prompt with required arguments

        Args:
            arg1: First test argument
            arg2: Second test argument
        """
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    if Message is not None:
        @prompt("test_prompt_with_embedded_resource", title="Prompt With Embedded Resource",
                description="A prompt that includes an embedded resource")
        def prompt_with_embedded_resource(resourceUri: str) -> list:
            """A prompt that includes an embedded resource

            Args:
                resourceUri: URI of the resource to embed
            """
            return [
                Message("user", EmbeddedResource(resourceUri, text="Embedded resource content for testing.",
                                                 mime_type="text/plain")),
                Message("user", "Please process the embedded resource above."),
            ]

        @prompt("test_prompt_with_image", title="Prompt With Image", description="A prompt that includes image content")
        def prompt_with_image() -> list:
            return [Message("user", Image(IMAGE, "image/png")), Message("user", "Please analyze the image above.")]

    @prompt("test_prompt", description="A plain prompt (the 2026-07-28 header scenarios get it by name)")
    def plain_prompt() -> str:
        return "A plain prompt."

    if InputRequired is not None:
        @prompt("test_input_required_result_prompt", description="A prompt that needs the user's context first")
        def input_required_prompt(ctx: Context) -> Any:
            got = _answers(ctx, "user_context")
            if got is None:
                return InputRequired({"user_context": _elicitation("What context should the prompt use?", "context")})
            return f"Use this context: {_elicited(got['user_context'], 'context')}"

if completion is not None and prompt is not None:
    @completion(prompt="test_prompt_with_arguments", argument="arg1")
    def complete_arg1(value: str, arguments: dict) -> list:
        return [v for v in ("paris", "park", "party") if v.startswith(value)]

if completion is not None and resource is not None:
    @completion(resource="test://template/{id}/data", argument="id")
    def complete_template_id(value: str, arguments: dict) -> list:
        return [v for v in ("1", "2", "3", "123") if v.startswith(value)]


# -- tasks (the 2026-07-28 tasks extension, SEP-2663) -------------------------------

Background = _api("Background")
JsonRpcError = _api("JsonRpcError")


def _sleep(ctx: Context, seconds: float) -> bool:
    """Sleep up to ``seconds`` in small steps; False when the call was cancelled meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.cancelled:
            return False
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return not ctx.cancelled


@tool
def greet(name: str) -> str:
    """Says hello (a synchronous tool)"""
    return f"Hello, {name}!"


if Background is not None:
    @tool(task="optional")
    def slow_compute(seconds: float, ctx: Context, label: str = "") -> str:
        """Sleeps ``seconds`` then answers; a task when the client takes one"""
        if not _sleep(ctx, seconds):
            return f"cancelled: {label}"
        return f"computed {label} after {seconds:g} s"

    @tool(task="required")
    def failing_job(ctx: Context) -> str:
        """Fails with a tool error after about a second (a task only)"""
        _sleep(ctx, 1.0)
        raise RuntimeError("failing_job always fails")

    @tool(task="optional")
    def protocol_error_job(ctx: Context) -> str:
        """Ends with a protocol error instead of a result"""
        raise JsonRpcError(-32603, "protocol_error_job: internal failure")

    @tool(task="optional")
    def confirm_delete(filename: str, ctx: Context) -> Any:
        """Asks the user to confirm before deleting a file (pretend)"""
        got = _answers(ctx, "confirm")
        if got is None:
            return InputRequired({"confirm": _elicitation(f"Delete {filename}?", "confirm", "boolean")})
        if got["confirm"].get("action") != "accept":
            return f"kept {filename}"
        return f"deleted {filename}"

    @tool(task="optional")
    def multi_input(ctx: Context) -> Any:
        """Asks two questions at once"""
        got = _answers(ctx, "first", "second")
        if got is None:
            return InputRequired({"first": _elicitation("First name?", "name"),
                                  "second": _elicitation("Confirm?", "confirm", "boolean")})
        return f"got {_elicited(got['first'], 'name')} and {_elicited(got['second'], 'name')}"

    @tool(task="required", on_request=True)
    def test_tool_with_task(ctx: Context) -> Any:
        """Asks for a name on the request, then continues as a task"""
        got = _answers(ctx, "user_name")
        if got is None:
            return InputRequired({"user_name": _elicitation("What is your name?", "name")})
        name = _elicited(got["user_name"], "name")

        def work() -> str:
            _sleep(ctx, 0.2)
            return f"Hello, {name}! (from a task)"

        return Background(work)


# SEP-2243: a tool whose arguments are mirrored into Mcp-Param-* headers.
tool(lambda region, priority=0, verbose=False, **_: f"searched {region} (priority {priority}, verbose {verbose})",
     name="test_custom_headers", description="A tool whose arguments clients mirror into Mcp-Param-* headers",
     input_schema={"type": "object", "properties": {
         "region": {"type": "string", "x-mcp-header": "Region"},
         "priority": {"type": "integer", "x-mcp-header": "Priority"},
         "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
         "query": {"type": "string"}}, "required": ["region"]})


# -- main ---------------------------------------------------------------------------------

def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--stateless", action="store_true", help="no sessions (Settings.stateless)")
    args = parser.parse_args(argv)
    if MISSING:
        print(f"fixture: this loopback lacks {', '.join(sorted(set(MISSING)))}; the scenarios that need "
              "them will fail", file=sys.stderr, flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = loopback.start(args.port, settings=loopback.Settings(auth=False, stateless=args.stateless))
    try:
        print(server.url, flush=True)
        while not stop.wait(3600):
            pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
