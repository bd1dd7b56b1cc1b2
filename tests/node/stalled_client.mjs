// A Node MCP client (the TypeScript SDK the inspector is built on) whose event loop stalls between two
// requests, as a client's does on a loaded machine. Usage: node stalled_client.mjs URL STALL_MS
// Prints {"stalled_ms": N, "isError": bool, "verdict": str} or {"error": "...", "cause": "..."} and exits 1.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, stallMs] = [new URL(process.argv[2]), Number(process.argv[3])];
const client = new Client({ name: "stalled-client", version: "0" });
await client.connect(new StreamableHTTPClientTransport(url));
await client.listTools();
const end = Date.now() + stallMs;
while (Date.now() < end) {} // busy: no timer, no socket event runs meanwhile
try {
  const result = await client.callTool({
    name: "enrich_ioc",
    arguments: { ioc_value: "secure-update.example.net" },
  });
  console.log(JSON.stringify({
    stalled_ms: stallMs,
    isError: result.isError,
    verdict: result.structuredContent?.assessment?.verdict,
  }));
  await client.close();
} catch (error) {
  console.log(JSON.stringify({ error: error.message, cause: `${error.cause?.code}: ${error.cause?.message}` }));
  process.exit(1);
}
