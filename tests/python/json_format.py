"""Python protobuf's json_format, the reference proto3 JSON implementation, over descriptors
given at run time.

    json_format.py SET.bin TYPE     for each line of standard input, a request:
        {"json": "..."}            parse it (json_format.Parse), answer {"binary": base64, "json": canonical}
        {"binary": "base64"}       decode it, answer {"json": canonical}
    Errors are answered {"error": "..."}. One answer line per request line.
"""
import base64
import json
import sys

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, empty_pb2  # noqa: F401
from google.protobuf import field_mask_pb2, json_format, message_factory, struct_pb2, timestamp_pb2  # noqa: F401
from google.protobuf import wrappers_pb2  # noqa: F401


def main():
    fds = descriptor_pb2.FileDescriptorSet()
    with open(sys.argv[1], "rb") as f:
        fds.ParseFromString(f.read())
    # The default pool holds the well-known types already; the rest is added dependencies first.
    pool = descriptor_pool.Default()
    pending = [f for f in fds.file if not f.name.startswith("google/protobuf/")]
    while pending:
        left = []
        for file in pending:
            try:
                pool.Add(file)
            except TypeError:
                left.append(file)
        if len(left) == len(pending):
            sys.exit(f"cannot load {[f.name for f in left]}")
        pending = left
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(sys.argv[2]))
    for line in sys.stdin:
        req = json.loads(line)
        try:
            msg = cls()
            if "json" in req:
                json_format.Parse(req["json"], msg, descriptor_pool=pool)
            else:
                msg.ParseFromString(base64.b64decode(req["binary"]))
            out = {
                "binary": base64.b64encode(msg.SerializeToString(deterministic=True)).decode(),
                "json": json_format.MessageToJson(msg, descriptor_pool=pool, indent=None),
            }
        except Exception as e:  # a refusal is an answer too
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
