"""Decode OTLP logs requests whose strings hold invalid UTF-8, replacing the bad bytes.

protobuf rejects a proto3 `string` field with invalid UTF-8, which would make one bad log line
fail a whole export. We keep a mirror of the OTLP logs messages in which every `string` is
`bytes` (the wire format is the same), parse with it only when the strict parse failed on UTF-8,
and copy the result into the real message type, decoding with U+FFFD replacements.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

_PREFIX = "via_lenient."
_REQUEST = "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest"


def _lenient_file(fd: Any) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    fd.CopyToProto(proto)
    proto.name = _PREFIX + proto.name
    proto.package = _PREFIX + proto.package
    deps = [_PREFIX + d for d in proto.dependency]
    del proto.dependency[:]
    proto.dependency.extend(deps)
    proto.ClearField("options")

    def fix(msg: descriptor_pb2.DescriptorProto) -> None:
        msg.ClearField("options")
        for f in msg.field:
            if f.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
                f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            if f.type_name.startswith(".opentelemetry."):
                f.type_name = "." + _PREFIX + f.type_name[1:]
        for nested in msg.nested_type:
            fix(nested)

    for msg in proto.message_type:
        fix(msg)
    for enum in proto.enum_type:
        enum.ClearField("options")
    del proto.service[:]
    return proto


@cache
def _lenient_request_class() -> type[Message]:
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(fd: Any) -> None:
        for dep in fd.dependencies:
            add(dep)
        if fd.name not in added:
            added.add(fd.name)
            pool.Add(_lenient_file(fd))

    add(logs_service_pb2.DESCRIPTOR)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(_PREFIX + _REQUEST))


def _repeated(field: Any) -> bool:
    """`is_repeated` on protobuf >= 6, `label` before it."""
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _copy(src: Message, dst: Message) -> None:
    for field, value in src.ListFields():
        target = dst.DESCRIPTOR.fields_by_name[field.name]
        is_string = target.type == FieldDescriptor.TYPE_STRING
        if target.type == FieldDescriptor.TYPE_MESSAGE:
            if _repeated(field):
                out = getattr(dst, field.name)
                for item in value:
                    _copy(item, out.add())
            else:
                _copy(value, getattr(dst, field.name))
        elif _repeated(field):
            getattr(dst, field.name).extend(
                v.decode("utf-8", "replace") if is_string else v for v in value
            )
        else:
            setattr(dst, field.name, value.decode("utf-8", "replace") if is_string else value)


def parse_lenient(data: bytes) -> logs_service_pb2.ExportLogsServiceRequest:
    """Parse like `ExportLogsServiceRequest.FromString`, replacing invalid UTF-8 in strings.

    Raises `google.protobuf.message.DecodeError` when the bytes are not protobuf at all.
    """
    lenient = _lenient_request_class().FromString(data)
    out = logs_service_pb2.ExportLogsServiceRequest()
    _copy(lenient, out)
    return out
