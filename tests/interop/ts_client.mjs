// A real MCP client written by someone else: the official TypeScript SDK
// (@modelcontextprotocol/sdk, pinned in package.json) over Streamable HTTP, or over stdio.
//
// Usage: node ts_client.mjs URL
//   with the request headers (the bearer token) as a JSON object in MCP_HEADERS,
//   so that the token stays off the process list.
// Or:    node ts_client.mjs --stdio
//   with a stdio server entry {"command", "args", "env"} (as in claude_desktop_config.json)
//   as JSON in MCP_STDIO: the SDK's StdioClientTransport starts that command.
// Prints one JSON line with what the server answered; exits non-zero on failure.
// tests/integration/test_interop.py runs it and checks that line.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const TIMEOUT_MS = 20_000; // per request; the whole run is bounded below

const watchdog = setTimeout(() => {
  process.stderr.write("ts_client: timed out\n");
  process.exit(3);
}, 45_000);

async function main() {
  const url = process.argv[2];
  if (!url) throw new Error("usage: node ts_client.mjs URL (headers in MCP_HEADERS) | --stdio (entry in MCP_STDIO)");
  let transport;
  if (url === "--stdio") {
    const entry = JSON.parse(process.env.MCP_STDIO || "{}");
    transport = new StdioClientTransport({
      command: entry.command, args: entry.args ?? [], env: entry.env ?? {}, cwd: entry.cwd, stderr: "inherit",
    });
  } else {
    const headers = JSON.parse(process.env.MCP_HEADERS || "{}");
    transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  }
  const client = new Client({ name: "loopback-interop-ts", version: "1.0.0" });
  const options = { timeout: TIMEOUT_MS };
  await client.connect(transport, options);
  try {
    const tools = await client.listTools(undefined, options);
    const echo = await client.callTool({ name: "echo", arguments: { text: "hello from ts" } }, undefined, options);
    const add = await client.callTool({ name: "add", arguments: { a: 2, b: 3.5 } }, undefined, options);
    const words = await client.callTool({ name: "word_count", arguments: { text: "one two\nthree" } }, undefined, options);
    const invalid = await client.callTool({ name: "add", arguments: { a: "two", b: 1 } }, undefined, options);
    let unknown;
    try {
      unknown = { result: await client.callTool({ name: "no_such_tool", arguments: {} }, undefined, options) };
    } catch (err) {
      unknown = { error: { code: err.code, message: String(err.message) } };
    }
    const ping = await client.ping(options);
    const output = {
      protocolVersion: transport.protocolVersion ?? null,
      serverInfo: client.getServerVersion() ?? null,
      capabilities: client.getServerCapabilities() ?? null,
      tools: tools.tools.map((tool) => ({ name: tool.name, inputSchema: tool.inputSchema, outputSchema: tool.outputSchema })),
      echo,
      add,
      words,
      invalid,
      unknown,
      ping,
    };
    process.stdout.write(JSON.stringify(output) + "\n");
  } finally {
    await client.close();
  }
}

main().then(
  () => {
    clearTimeout(watchdog);
    process.exitCode = 0;
  },
  (err) => {
    clearTimeout(watchdog);
    process.stderr.write(`ts_client: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  },
);
