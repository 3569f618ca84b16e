"""Each stage depends on its own configuration section, not on the whole application config.

`via_otlp/config.py` imports every stage's config; a stage that imported it would formally
depend on all the others (intake on the detection settings). Only the composition roots
(app.py, cli.py, config.py, pipeline.py, replay.py, shard/, simulate/) see the whole.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import via_otlp

ROOT = Path(via_otlp.__file__).parent
STAGES = ("receive", "patterns", "detect", "emit", "registry", "correlate", "control",
          "telemetry", "security")  # fmt: skip


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_does_not_import_the_whole_config(stage: str) -> None:
    files = sorted((ROOT / stage).rglob("*.py"))
    assert files
    offenders = [
        str(f.relative_to(ROOT))
        for f in files
        if "gen" not in f.relative_to(ROOT).parts and "via_otlp.config" in _imports(f)
    ]
    assert offenders == []
