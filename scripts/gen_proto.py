#!/usr/bin/env python3
"""Write a FileDescriptorSet for the pinned client's protos, ready for protoc-c.

The official `modal` wheel ships its protocol as compiled descriptors (modal_proto/api_pb2.py), not as
.proto text. We read those descriptors from the installed, pinned client and clear `proto3_optional`
on every field: protoc-c 1.4 refuses proto3 `optional`, and a proto3 optional field is exactly a
one-member (synthetic) oneof, which the descriptor already carries. Wire format and presence are
unchanged. Output: argv[1] (a binary FileDescriptorSet).
"""
import sys

from google.protobuf import descriptor_pb2
from modal_proto import api_pb2, task_command_router_pb2


def strip_optional(msg):
    for field in msg.field:
        if field.proto3_optional:
            field.proto3_optional = False
    for nested in msg.nested_type:
        strip_optional(nested)


def main():
    out = descriptor_pb2.FileDescriptorSet()
    seen = set()

    def add(fd):
        if fd.name in seen:
            return
        for dep in fd.dependencies:
            add(dep)
        seen.add(fd.name)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        for msg in proto.message_type:
            strip_optional(msg)
        out.file.append(proto)

    add(api_pb2.DESCRIPTOR)
    add(task_command_router_pb2.DESCRIPTOR)
    with open(sys.argv[1], "wb") as f:
        f.write(out.SerializeToString())


if __name__ == "__main__":
    main()
