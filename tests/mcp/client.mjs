// An official MCP client (the TypeScript SDK v2, @modelcontextprotocol/client) against a
// deployment's /mcp, as an agent would use it: connect, list tools, search, fetch a page in
// two chunks, read a resource, and (with a writer token) join a group and send a message.
// Usage: node client.mjs BASE_URL TOKEN MODE, MODE a protocol version to pin (2026-07-28),
// `legacy` (the initialize handshake) or `auto`; prints one JSON line of what it saw.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [base, token, mode] = process.argv.slice(2);
const negotiation = mode === 'legacy' || mode === 'auto' ? mode : { pin: mode };
const seen = {};
const text = (result) => result.structuredContent ?? JSON.parse(result.content[0].text);

function connect(withToken) {
  const headers = withToken ? { Authorization: `Bearer ${token}` } : {};
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', base), {
    requestInit: { headers },
  });
  const client = new Client(
    { name: 'mcp-edge-e2e', version: '1.0.0' },
    { versionNegotiation: { mode: negotiation } },
  );
  return client.connect(transport).then(() => client);
}

try {
  const client = await connect(false);
  seen.protocol_version = client.getNegotiatedProtocolVersion?.() ?? client.protocolVersion ?? null;
  seen.server = client.getServerVersion?.()?.name ?? null;
  const tools = await client.listTools();
  seen.tools = tools.tools.map((t) => t.name);

  seen.searches = {};
  for (const [query, version] of [
    ['quickstart register two clients', undefined],
    ['idempotency key retries', 'v1'],
    ['messages between clients in groups', 'v1'],
  ]) {
    const args = version ? { query, version } : { query };
    const r = await client.callTool({ name: 'search_docs', arguments: args });
    seen.searches[query] = text(r).results.map((x) => x.uri);
  }

  const first = text(await client.callTool({
    name: 'fetch_doc', arguments: { uri: 'docs://v1/quickstart', max_chars: 200 },
  }));
  const rest = text(await client.callTool({
    name: 'fetch_doc', arguments: { uri: 'docs://v1/quickstart', offset: first.next_offset, max_chars: 100000 },
  }));
  seen.fetched = { first_next: first.next_offset, rest_next: rest.next_offset, text: first.text + rest.text };

  const listed = await client.listResources();
  seen.resources = listed.resources.map((r) => r.uri);
  const read = await client.readResource({ uri: 'docs://v1/api' });
  seen.read = { mime: read.contents[0].mimeType, starts: read.contents[0].text.slice(0, 40) };

  try {
    await client.readResource({ uri: 'docs://v1/no-such-page' });
    seen.missing = 'found';
  } catch (e) {
    seen.missing = e.code ?? String(e);
  }

  const denied = await client
    .callTool({ name: 'register_client', arguments: { client_id: 'mcp-a', group_id: 'mcp-g' } })
    .then(() => 'accepted', (e) => String(e));
  seen.without_token = denied;

  const writer = await connect(true);
  for (const id of ['mcp-a', 'mcp-b']) {
    await writer.callTool({ name: 'register_client', arguments: { client_id: id, group_id: 'mcp-g' } });
  }
  const sent = text(await writer.callTool({
    name: 'send_message',
    arguments: { sender_id: 'mcp-a', group_id: 'mcp-g', payload: { from: 'mcp', n: 1 } },
  }));
  seen.sent = sent;
  await client.close();
  await writer.close();
} catch (e) {
  seen.failure = String(e && e.stack ? e.stack : e);
}
console.log(JSON.stringify(seen));
