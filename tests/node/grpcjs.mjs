// @grpc/grpc-js (with @grpc/proto-loader) calling testing.Tester: all four call kinds,
// deadlines, metadata, status details and gzip; prints what it saw as JSON.
//
//   node grpcjs.mjs HOST:PORT PROTO_DIR
import grpc from "@grpc/grpc-js";
import loader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const [address, protoDir] = process.argv.slice(2);
const definition = loader.loadSync("testing.proto", { includeDirs: [protoDir], keepCase: true, longs: String, defaults: true });
const { Tester } = grpc.loadPackageDefinition(definition).testing;
// gzip on every message this side sends; the server may answer compressed too.
const client = new Tester(address, grpc.credentials.createInsecure(), {
  "grpc.default_compression_algorithm": 2,
  "grpc.default_compression_level": 2,
});

// google.rpc.Status and ErrorInfo, to read grpc-status-details-bin.
const rpc = protobuf.Root.fromJSON({
  nested: {
    Any: { fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } },
    Status: {
      fields: {
        code: { type: "int32", id: 1 },
        message: { type: "string", id: 2 },
        details: { rule: "repeated", type: "Any", id: 3 },
      },
    },
    ErrorInfo: {
      fields: {
        reason: { type: "string", id: 1 },
        domain: { type: "string", id: 2 },
        metadata: { keyType: "string", type: "string", id: 3 },
      },
    },
  },
});

const deadline = (ms) => new Date(Date.now() + ms);
const unary = (method, req, md = new grpc.Metadata(), ms = 5000) =>
  new Promise((resolve) => client[method](req, md, { deadline: deadline(ms) }, (err, reply) => resolve({ err, reply })));

function failure(err) {
  const out = { code: err.code, details: err.details };
  const bin = err.metadata.get("grpc-status-details-bin")[0];
  if (bin) {
    const status = rpc.lookupType("Status").decode(bin);
    const info = rpc.lookupType("ErrorInfo").decode(status.details[0].value);
    out.status = { code: status.code, message: status.message, type: status.details[0].type_url, info: info.metadata };
  }
  return out;
}

const out = {};
{
  const md = new grpc.Metadata();
  md.set("x-peer", "grpc-js");
  const { err, reply } = await unary("echo", { message: "from grpc-js", big: "1152921504606846976" }, md);
  out.echo = err
    ? failure(err)
    : { message: reply.message, big: reply.big, peer: reply.metadata["x-peer"], deadlineMs: Number(reply.deadline_ms) };
}
{
  const big = "squeeze ".repeat(30000);
  const { err, reply } = await unary("echo", { message: big });
  out.gzip = err ? failure(err) : { same: reply.message === big };
}
{
  // 5 MiB that gzip makes tiny: the server must refuse it once inflated past its 4 MiB limit.
  const { err } = await unary("echo", { message: "a".repeat(5 << 20) });
  out.bomb = err ? failure(err) : null;
}
{
  const { err } = await unary("echo", { message: "slow", sleep_ms: 5000 }, new grpc.Metadata(), 300);
  out.deadline = err ? failure(err) : null;
}
{
  const { err } = await unary("echo", { message: "no", fail_code: 404 });
  out.notFound = err ? failure(err) : null;
}
out.codes = {};
for (let code = 1; code <= 16; code++) {
  const { err } = await unary("echo", { message: `code ${code}`, grpc_code: code });
  out.codes[code] = err ? err.code : 0;
}
out.count = await new Promise((resolve) => {
  const values = [];
  const call = client.count({ to: 5 }, { deadline: deadline(5000) });
  call.on("data", (n) => values.push(Number(n.value)));
  call.on("status", (s) => resolve({ values, code: s.code }));
  call.on("error", () => {});
});
out.sum = await new Promise((resolve) => {
  const call = client.sum({ deadline: deadline(5000) }, (err, n) => resolve(err ? failure(err) : Number(n.value)));
  for (const v of [5, 6, 7]) call.write({ value: String(v) });
  call.end();
});
out.shout = await new Promise((resolve) => {
  const got = [];
  const call = client.shout({ deadline: deadline(5000) });
  call.on("data", (l) => got.push(l.text));
  call.on("status", (s) => resolve({ got, code: s.code }));
  call.on("error", () => {});
  call.write({ text: "hey" });
  call.write({ text: "you" });
  call.end();
});
client.close();
console.log(JSON.stringify(out));
