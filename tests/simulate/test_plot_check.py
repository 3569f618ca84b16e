"""`simulate --plot` without matplotlib stops before the run, with the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SMALL = Path(__file__).parent / "data" / "small.json5"

_PROBE = """
import sys
sys.modules["matplotlib"] = None  # as if it were not installed
import via_otlp.simulate.run as run
def boom(*a, **k):
    raise AssertionError("a scenario ran")
run.run_offline = boom
from via_otlp.cli import main
sys.exit(main(["simulate", sys.argv[1], "--plot", sys.argv[2]]))
"""


def test_plot_without_matplotlib_fails_before_any_scenario_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(SMALL), str(tmp_path / "plots")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "--plot needs matplotlib" in out.stderr and "pip install" in out.stderr
    assert "a scenario ran" not in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "plots").exists()
