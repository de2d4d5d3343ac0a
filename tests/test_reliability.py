"""The shortened reliability suite (``make reliability`` runs it at full length)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_the_short_reliability_suite_passes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "reliability.json"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "reliability.py"),
            "--short",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.exists(), res.stdout[-3000:] + res.stderr[-3000:]
    rows = {r["row"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"fuzzing", "load", "reload", "crash", "security", "resources"}
    failed = {name: r for name, r in rows.items() if not r["passed"]}
    assert not failed, json.dumps(failed, indent=1)[:4000]
    assert rows["fuzzing"]["cases"] > 100 and rows["fuzzing"]["server_errors"] == 0
    assert rows["crash"]["acknowledged"] > 0 and rows["crash"]["acknowledged_lost"] == 0
    assert rows["reload"]["half_loaded_answers"] == 0 and rows["reload"]["failed"] == 0
    assert res.returncode == 0
