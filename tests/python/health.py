"""grpc.health.v1 from the official grpcio-health-checking package, against a micro service.

    health.py check HOST:PORT [SERVICE]   prints the status name of one Check
    health.py watch HOST:PORT [SERVICE]   prints the status name of every Watch reply, one per
                                          line, then END when the server ends the stream
"""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main():
    mode, addr = sys.argv[1], sys.argv[2]
    service = sys.argv[3] if len(sys.argv) > 3 else ""
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        if mode == "check":
            reply = stub.Check(request, timeout=5)
            print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status), flush=True)
            return
        try:
            for reply in stub.Watch(request, timeout=60):
                print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status), flush=True)
            print("END", flush=True)
        except grpc.RpcError as e:
            print(f"ERROR {e.code().name}", flush=True)


if __name__ == "__main__":
    main()
