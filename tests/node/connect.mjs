// connect-es (`@connectrpc/connect-node`) calling testing.Tester with one of its transports, and
// printing what it saw as JSON for the Rust test to check.
//
//   node connect.mjs BASE_URL DESCRIPTOR_SET TRANSPORT HTTP_VERSION [CA_PEM]
//
// TRANSPORT: connect-json, connect-proto, grpc-web, grpc-web-json, grpc. HTTP_VERSION: 1.1 or 2.
import { readFileSync } from "node:fs";
import { createClient, ConnectError } from "@connectrpc/connect";
import { compressionGzip, createNodeHttpClient, Http2SessionManager } from "@connectrpc/connect-node";
import { createTransport as connectTransport } from "@connectrpc/connect/protocol-connect";
import { createTransport as grpcWebTransport } from "@connectrpc/connect/protocol-grpc-web";
import { createTransport as grpcTransport } from "@connectrpc/connect/protocol-grpc";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const [baseUrl, descriptorPath, kind, httpVersion, caPath] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorPath)));
const Tester = registry.getService("testing.Tester");

// Every HTTP request the transport makes: method, path, and the compression each way.
const calls = [];
const ca = caPath ? { ca: readFileSync(caPath) } : undefined;
const inner = createNodeHttpClient({
  httpVersion,
  nodeOptions: ca,
  sessionProvider: (url) => new Http2SessionManager(url, {}, ca),
});
const encoding = (h) => h.get("content-encoding") ?? h.get("grpc-encoding") ?? h.get("connect-content-encoding");
async function httpClient(req) {
  const res = await inner(req);
  calls.push(`${req.method} ${new URL(req.url).pathname} sent=${encoding(req.header)} got=${encoding(res.header)}`);
  return res;
}
// The options connect-node's create*Transport fill in, with the recording HTTP client.
const options = {
  baseUrl,
  httpClient,
  interceptors: [],
  sendCompression: compressionGzip,
  acceptCompression: [compressionGzip],
  compressMinBytes: 1024,
  readMaxBytes: 0xffffffff,
  writeMaxBytes: 0xffffffff,
};
const make = {
  "connect-json": () => connectTransport({ ...options, useBinaryFormat: false, useHttpGet: true }),
  "connect-proto": () => connectTransport({ ...options, useBinaryFormat: true, useHttpGet: true }),
  "grpc-web": () => grpcWebTransport({ ...options, useBinaryFormat: true }),
  "grpc-web-json": () => grpcWebTransport({ ...options, useBinaryFormat: false }),
  grpc: () => grpcTransport({ ...options, useBinaryFormat: true }),
}[kind];
const client = createClient(Tester, make());
const out = { transport: kind, httpVersion };

function failure(e) {
  if (!(e instanceof ConnectError)) return { thrown: String(e) };
  return {
    code: e.code,
    message: e.rawMessage,
    details: e.details.map((d) => d.type ?? d.desc?.typeName),
  };
}

async function attempt(name, f) {
  try {
    out[name] = await f();
  } catch (e) {
    out[name] = { error: failure(e) };
  }
}

const streamsUp = httpVersion === "2";

await attempt("echo", async () => {
  const headers = {};
  const reply = await client.echo(
    { message: "from connect-node", big: 1n << 60n },
    {
      headers: { "x-peer": "connect-node" },
      timeoutMs: 5000,
      onHeader: (h) => (headers.contentType = h.get("content-type")),
    },
  );
  return {
    message: reply.message,
    big: String(reply.big),
    peer: reply.metadata["x-peer"] ?? reply.metadata["X-Peer"] ?? "",
    deadlineMs: Number(reply.deadlineMs),
    metadata: Object.keys(reply.metadata).sort(),
    contentType: headers.contentType,
  };
});

await attempt("gzip", async () => {
  const big = "compress me ".repeat(20000);
  const reply = await client.echo({ message: big });
  return { same: reply.message === big, length: reply.message.length };
});

await attempt("bomb", async () => {
  // 5 MiB that gzip makes tiny: the server must refuse it once inflated past its 4 MiB limit.
  await client.echo({ message: "a".repeat(5 << 20) });
  return { error: null };
});

await attempt("peek", async () => {
  const reply = await client.peek({ message: "peeked" });
  return { message: reply.message, metadata: Object.keys(reply.metadata).sort() };
});

await attempt("count", async () => {
  const values = [];
  for await (const n of client.count({ to: 5 })) values.push(Number(n.value));
  return values;
});

await attempt("countFails", async () => {
  const values = [];
  try {
    for await (const n of client.count({ to: 5, failAt: 3 })) values.push(Number(n.value));
    return { values, error: null };
  } catch (e) {
    return { values, error: failure(e) };
  }
});

if (streamsUp) {
  await attempt("sum", async () => {
    async function* numbers() {
      for (const v of [1n, 2n, 3n, 4n]) yield { value: v };
    }
    return Number((await client.sum(numbers())).value);
  });
  await attempt("shout", async () => {
    async function* lines() {
      for (const text of ["one", "two"]) yield { text };
    }
    const got = [];
    for await (const l of client.shout(lines())) got.push(l.text);
    return got;
  });
}

await attempt("deadline", async () => {
  const started = Date.now();
  try {
    await client.echo({ message: "slow", sleepMs: 5000 }, { timeoutMs: 300 });
    return { error: null };
  } catch (e) {
    return { error: failure(e), tookMs: Date.now() - started };
  }
});

out.codes = {};
for (let code = 1; code <= 16; code++) {
  try {
    await client.echo({ message: `code ${code}`, grpcCode: code });
    out.codes[code] = { error: null };
  } catch (e) {
    out.codes[code] = failure(e);
  }
}

out.calls = [...new Set(calls)].sort();
console.log(JSON.stringify(out));
