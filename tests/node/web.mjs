// The page script of the browser test, bundled with esbuild: `@connectrpc/connect-web` calling
// testing.Tester on another origin. `window.callTester(baseUrl, descriptorSetBase64, kind)` runs
// a unary call and a server stream with the Connect (JSON) or gRPC-Web transport and resolves to
// what came back, or to the error it met.
import { createClient, ConnectError } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

window.callTester = async (baseUrl, descriptorSetBase64, kind) => {
  const bytes = Uint8Array.from(atob(descriptorSetBase64), (c) => c.charCodeAt(0));
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
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
