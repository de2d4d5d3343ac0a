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
    assert set(rows) == {
        "fuzzing", "load", "reload", "crash", "bad_data", "security", "resources"
    }  # fmt: skip
    failed = {name: r for name, r in rows.items() if not r["passed"]}
    assert not failed, json.dumps(failed, indent=1)[:4000]
    assert rows["fuzzing"]["cases"] > 100 and rows["fuzzing"]["server_errors"] == 0
    assert rows["crash"]["acknowledged"] > 0 and rows["crash"]["acknowledged_lost"] == 0
    assert rows["reload"]["half_loaded_answers"] == 0 and rows["reload"]["failed"] == 0
    crash = rows["crash"]
    assert crash["consumer_lost"] == crash["consumer_duplicated"] == 0
    assert crash["killed_mid_ingest"] > 0 and crash["half_ingested_files"] == 0
    bad = rows["bad_data"]
    for path in ("ingest_ratings", "folder_flow", "ingest_events", "stream"):
        assert bad[path]["reported"] == bad[path]["bad"] > 0, path
        assert bad[path]["kept"] == bad[path]["valid"], path
    assert bad["crashes"] == 0 and bad["larger_than_memory"]["ingest_refused_with_message"]
    assert rows["security"]["files_written_outside_home"] == 0
    assert res.returncode == 0
