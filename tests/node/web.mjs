// The page script of the browser test, bundled with esbuild: `@connectrpc/connect-web` calling
// testing.Tester on another origin. `window.callTester(baseUrl, descriptorSetBase64, kind)` runs
// a unary call and a server stream with the Connect (JSON) or gRPC-Web transport and resolves to
// what came back, or to the error it met.
import { createClient, ConnectError } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GrpcWebClientBase, MethodDescriptor, MethodType } from "grpc-web";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

function registryOf(descriptorSetBase64) {
  const bytes = Uint8Array.from(atob(descriptorSetBase64), (c) => c.charCodeAt(0));
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
}

// Google's grpc-web runtime in its default `text` mode (application/grpc-web-text, base64 both
// ways), with bufbuild doing the protobuf.
async function callWithGrpcWebText(baseUrl, registry) {
  const client = new GrpcWebClientBase({ format: "text" });
  const message = (name) => registry.getMessage(`testing.${name}`);
  const method = (name, kind, req, resp) =>
    new MethodDescriptor(
      `/testing.Tester/${name}`,
      kind,
      Object,
      Object,
      (m) => toBinary(message(req), create(message(req), m)),
      (b) => fromBinary(message(resp), b),
    );
  const unary = (name, req) =>
    new Promise((resolve, reject) =>
      client.rpcCall(
        `${baseUrl}/testing.Tester/${name}`,
        req,
        { "x-peer": "browser" },
        method(name, MethodType.UNARY, "EchoRequest", "EchoReply"),
        (err, r) => (err ? reject(err) : resolve(r)),
      ),
    );
  try {
    const reply = await unary("Echo", { message: "from grpc-web-text in a browser" });
    const peek = await unary("Peek", { message: "peek" });
    const count = await new Promise((resolve, reject) => {
      const got = [];
      const stream = client.serverStreaming(
        `${baseUrl}/testing.Tester/Count`,
        { to: 4 },
        {},
        method("Count", MethodType.SERVER_STREAMING, "CountRequest", "Number"),
      );
      stream.on("data", (n) => got.push(Number(n.value)));
      stream.on("error", reject);
      stream.on("end", () => resolve(got));
    });
    let failure = null;
    try {
      await unary("Echo", { message: "no", grpcCode: 7 });
    } catch (e) {
      failure = { code: e.code, message: e.message };
    }
    return { echo: reply.message, peer: reply.metadata["x-peer"] ?? "", peek: peek.message, count, failure };
  } catch (e) {
    return { error: `${e.code}: ${e.message}` };
  }
}

window.callTester = async (baseUrl, descriptorSetBase64, kind) => {
  const registry = registryOf(descriptorSetBase64);
  if (kind === "grpc-web-text") return callWithGrpcWebText(baseUrl, registry);
  const Tester = registry.getService("testing.Tester");
  const transport =
    kind === "grpc-web"
      ? createGrpcWebTransport({ baseUrl })
      : createConnectTransport({ baseUrl, useBinaryFormat: false, useHttpGet: true });
  const client = createClient(Tester, transport);
  try {
    const echo = await client.echo({ message: `from ${kind} in a browser` }, { headers: { "x-peer": "browser" } });
    const peek = await client.peek({ message: "peek" });
    const count = [];
    for await (const n of client.count({ to: 4 })) count.push(Number(n.value));
    let failure = null;
    try {
      await client.echo({ message: "no", grpcCode: 7 });
    } catch (e) {
      failure = { code: e.code, message: e.rawMessage };
    }
    return { echo: echo.message, peer: echo.metadata["x-peer"] ?? "", peek: peek.message, count, failure };
  } catch (e) {
    return { error: e instanceof ConnectError ? `${e.code}: ${e.rawMessage}` : String(e) };
  }
};
window.testerReady = true;
