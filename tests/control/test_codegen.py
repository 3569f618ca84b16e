"""The generated code is what `protos/` gives today, and the .proto documents every element."""

from __future__ import annotations

import re
from importlib.metadata import version

from via_otlp.control import codegen
from via_otlp.control.gen.via.v1 import control_pb2


def test_committed_generated_code_is_up_to_date() -> None:
    stale = codegen.stale_files()
    assert not stale, (
        f"via_otlp/control/gen is stale ({', '.join(stale)}): run "
        f"`python -m via_otlp.control.codegen` (grpcio-tools {version('grpcio-tools')} here)"
    )


def test_generated_code_imports_from_the_package() -> None:
    text = (codegen.GEN_DIR / "via/v1/control_pb2_grpc.py").read_text()
    assert "from via_otlp.control.gen.via.v1 import control_pb2" in text
    assert "\nfrom via.v1 import" not in text
    assert control_pb2.DESCRIPTOR.services_by_name["Control"].full_name == "via.v1.Control"


_DOCUMENTED = re.compile(
    r"^\s*(?:(?:optional|repeated)\s+)?(?:map<[\w, ]+>|[\w.]+)\s+\w+\s*=\s*\d+;"  # a field
    r"|^\s*[A-Z][A-Z0-9_]*\s*=\s*\d+;"  # an enum value
    r"|^\s*(?:enum|service)\s+\w+"
    r"|^\s*rpc\s+\w+"
)


def test_every_field_enum_value_and_rpc_is_commented() -> None:
    """Units and meanings live in the .proto (messages are named after their RPC)."""
    lines = (codegen.PROTO_ROOT / codegen.PROTOS[0]).read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        if _DOCUMENTED.match(line):
            previous = next((p.strip() for p in reversed(lines[:i]) if p.strip()), "")
            if not previous.startswith("//"):
                undocumented.append(f"line {i + 1}: {line.strip()}")
    assert not undocumented, "control.proto elements without a comment above:\n" + "\n".join(
        undocumented
    )


def test_the_service_has_every_rpc() -> None:
    methods = {m.name for m in control_pb2.DESCRIPTOR.services_by_name["Control"].methods}
    assert methods == {
        "GetStatus", "ListProfiles", "GetProfile", "ListTemplates", "ListAnomalies",
        "ListPatches", "UpsertPatch", "DeletePatch", "GetSchema", "ListSchemas",
        "ListIncidents", "GetIncident", "SearchSimilar",
    }  # fmt: skip
