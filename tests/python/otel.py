"""OpenTelemetry peers for the trace tests, built on the OpenTelemetry Python SDK.

    otel.py receiver      an OTLP receiver on 127.0.0.1: HTTP/protobuf (POST /v1/traces) and gRPC
                          (TraceService/Export), decoded with the official opentelemetry-proto
                          types; each span notes its batch's protocol, gzip and `x-tenant`
                          header. Prints `HTTP_PORT GRPC_PORT`, then serves GET /spans (every span
                          received, as JSON) until stdin closes.
    otel.py client ADDR ENDPOINT
                          starts a trace with the SDK, calls testing.Tester/Echo at ADDR through
                          opentelemetry-instrumentation-grpc, exports its spans to ENDPOINT
                          (OTLP/HTTP), prints {"trace_id": ..., "reply": ...}.
"""
import gzip
import json
import os
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SPANS = []
LOCK = threading.Lock()
SPAN_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def value_of(v):
    """An OTLP AnyValue as a plain Python value."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def collect(request, via, gzip=False, tenant=None):
    """Records every span of an ExportTraceServiceRequest, with how the batch came: its
    protocol, whether its body was gzip-compressed, and its `x-tenant` header."""
    out = []
    for rs in request.resource_spans:
        resource = {kv.key: value_of(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append({
                    "via": via,
                    "gzip": gzip,
                    "tenant": tenant,
                    "service": resource.get("service.name"),
                    "resource": resource,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": SPAN_KINDS.get(span.kind, str(span.kind)),
                    "status": span.status.code,
                    "attributes": {kv.key: value_of(kv.value) for kv in span.attributes},
                })
    with LOCK:
        SPANS.extend(out)


class Http(BaseHTTPRequestHandler):
    # Keep-alive, as collectors do: the exporter's connection is reused between batches.
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        compressed = self.headers.get("content-encoding", "") == "gzip"
        if compressed:
            body = gzip.decompress(body)
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        collect(request, "http", compressed, self.headers.get("x-tenant"))
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self):
        with LOCK:
            body = json.dumps(SPANS).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Grpc(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        collect(request, "grpc", tenant=dict(context.invocation_metadata()).get("x-tenant"))
        # A reply long enough to be compressed: the exporter must read a gzip reply.
        partial = trace_service_pb2.ExportTracePartialSuccess(error_message="accepted; " * 40)
        return trace_service_pb2.ExportTraceServiceResponse(partial_success=partial)


def receiver():
    http = ThreadingHTTPServer(("127.0.0.1", 0), Http)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    # Replies gzip-compressed, as grpc-go collectors answer a compressed request.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), compression=grpc.Compression.Gzip)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Grpc(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(http.server_address[1], grpc_port, flush=True)
    sys.stdin.read()
    server.stop(0)
    http.shutdown()


def client(addr, endpoint):
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "python-client"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    GrpcInstrumentorClient().instrument()
    from interop import load_stubs

    pb, rpc = load_stubs()
    tracer = trace.get_tracer("micro-tests")
    with tracer.start_as_current_span("python-root") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        with grpc.insecure_channel(addr) as channel:
            reply = rpc.TesterStub(channel).Echo(pb.EchoRequest(message="traced"), timeout=10)
    provider.shutdown()
    print(json.dumps({"trace_id": trace_id, "reply": MessageToDict(reply)}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["receiver"]:
        receiver()
    elif sys.argv[1:2] == ["client"] and len(sys.argv) == 4:
        client(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
