"""A real gRPC peer for the interop tests, built on Python grpcio.

    interop.py client HOST:PORT   calls testing.Tester (every call kind) and prints JSON results
    interop.py server             serves testing.Tester on 127.0.0.1, prints its port, runs until stdin closes

Stubs are generated at start from tests/proto/testing.proto with grpc_tools.protoc.
"""
import atexit
import json
import os
import shutil
import sys
import tempfile
import threading
from concurrent import futures

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "proto")


def load_stubs():
    out = tempfile.mkdtemp(prefix="micro-interop-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}",
        os.path.join(PROTO_DIR, "testing.proto"),
    ])
    if rc != 0:
        sys.exit(f"grpc_tools.protoc failed with {rc}")
    sys.path.insert(0, out)
    import testing_pb2, testing_pb2_grpc  # noqa: E401
    return testing_pb2, testing_pb2_grpc


def client(addr):
    pb, rpc = load_stubs()
    with grpc.insecure_channel(addr) as channel:
        stub = rpc.TesterStub(channel)
        out = {}
        reply = stub.Echo(pb.EchoRequest(message="from python", big=1 << 60), metadata=[("x-peer", "python")], timeout=5)
        out["echo"] = {"message": reply.message, "big": reply.big, "peer": reply.metadata.get("x-peer", "")}
        out["count"] = [n.value for n in stub.Count(pb.CountRequest(to=4), timeout=5)]
        out["sum"] = stub.Sum(iter([pb.Number(value=v) for v in (5, 6, 7)]), timeout=5).value
        out["shout"] = [l.text for l in stub.Shout(iter([pb.Line(text=t) for t in ("a", "bc")]), timeout=5)]
        try:
            stub.Echo(pb.EchoRequest(message="x", fail_code=404), timeout=5)
            out["error"] = None
        except grpc.RpcError as e:
            out["error"] = {"code": e.code().name, "details": e.details()}
        print(json.dumps(out), flush=True)


def server():
    pb, rpc = load_stubs()

    class Tester(rpc.TesterServicer):
        def Echo(self, request, context):
            if request.fail_code:
                context.abort(grpc.StatusCode.NOT_FOUND, f"python says no: {request.message}")
            md = {k: v for k, v in context.invocation_metadata()}
            return pb.EchoReply(message=request.message, metadata=md, node="python", big=request.big)

        def Count(self, request, context):
            for i in range(1, request.to + 1):
                yield pb.Number(value=i)

        def Sum(self, request_iterator, context):
            return pb.Number(value=sum(n.value for n in request_iterator))

        def Shout(self, request_iterator, context):
            for line in request_iterator:
                yield pb.Line(text=line.text.upper())

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rpc.add_TesterServicer_to_server(Tester(), srv)
    try:
        from grpc_reflection.v1alpha import reflection
        names = (pb.DESCRIPTOR.services_by_name["Tester"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, srv)
    except ImportError:
        pass
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    print(port, flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), srv.stop(0)), daemon=True).start()
    srv.wait_for_termination()


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client(sys.argv[2])
    elif sys.argv[1:2] == ["server"]:
        server()
    else:
        sys.exit(__doc__)
