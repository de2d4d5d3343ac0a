"""Ingest never crashes on odd input (issue #19): overlong fields and lines are rejected rows,
the CLI prints one line (never a traceback, never markup from the data), SQL takes paths as
arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from movierec.cli import app
from movierec.data.store import ParquetStore, open_store
from movierec.data.validate import MAX_FIELD_BYTES, MAX_LINE_BYTES
from movierec.settings import Settings
from tests.conftest import write

runner = CliRunner()
HEADER = "userId,movieId,rating,timestamp\n"
GOOD = "1,10,4.0,1000000000\n2,20,3.5,1000000001\n"


def test_a_10mb_field_is_a_rejected_row(tmp_path: Path, settings: Settings) -> None:
    big = "1" * 10_000_000
    f = write(
        tmp_path / "ratings.csv", f"{HEADER}{GOOD}3,{big},4.0,1000000002\n4,40,5.0,1000000003\n"
    )
    report = tmp_path / "r.json"
    res = runner.invoke(
        app, ["data", "ingest", str(f), "--kind", "ratings", "--report", str(report)]
    )
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    rep = json.loads(report.read_text())["reports"][0]
    assert rep["reject_rows"] == 1 and rep["clean_rows"] == 3
    reject = rep["rejects"][0]
    assert reject["line"] == 4 and str(MAX_LINE_BYTES) in reject["reason"]
    assert len(reject["raw"]) < 1000
    assert open_store(settings).count("ratings") == 3


def test_a_long_title_is_rejected_and_the_rest_kept(tmp_path: Path, settings: Settings) -> None:
    title = "x" * (MAX_FIELD_BYTES + 1)
    text = f'movieId,title,genres\n1,Heat (1995),Action\n2,"{title}",Drama\n3,Up (2009),Animation\n'
    f = write(tmp_path / "movies.csv", text)
    report = tmp_path / "r.json"
    res = runner.invoke(
        app, ["data", "validate", str(f), "--kind", "movies", "--report", str(report)]
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(report.read_text())
    assert rep["clean_rows"] == 2 and rep["rejects"][0]["line"] == 3
    assert str(MAX_FIELD_BYTES) in rep["rejects"][0]["reason"]


def test_cli_errors_never_interpret_markup_from_data(tmp_path: Path, settings: Settings) -> None:
    f = write(tmp_path / "ratings.csv", "userId,:x:[bold red]boom[/],rating,timestamp\n1,2,3,4\n")
    res = runner.invoke(app, ["data", "validate", str(f), "--kind", "ratings"])
    assert res.exit_code == 2
    assert ":x:" in res.output and "[bold red]boom[/]" in res.output
    assert "❌" not in res.output and "Traceback" not in res.output


def test_an_unexpected_error_is_one_line_and_debug_shows_the_trace(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import movierec.data.ingest as ingest

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("planted")

    monkeypatch.setattr(ingest, "ingest_source", broken)
    f = write(tmp_path / "ratings.csv", HEADER + GOOD)
    res = runner.invoke(app, ["data", "ingest", str(f), "--kind", "ratings"])
    assert res.exit_code == 2 and "RuntimeError: planted" in res.output
    assert "Traceback" not in res.output and "--debug" in res.output
    res = runner.invoke(app, ["--debug", "data", "ingest", str(f), "--kind", "ratings"])
    assert isinstance(res.exception, RuntimeError)


_lines = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
        st.tuples(st.integers(-5, 2**40), st.integers(-5, 2**40), st.floats(), st.integers()).map(
            lambda t: ",".join(map(str, t))
        ),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=_lines)
def test_fuzzed_ingest_never_shows_a_traceback(
    lines: list[str], tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    body = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines)
    f = folder / "ratings.csv"
    f.write_bytes((HEADER + GOOD + body).encode("utf-8", "surrogateescape"))
    res = runner.invoke(app, ["data", "ingest", str(f), "--kind", "ratings", "--force"])
    assert res.exit_code in (0, 2, 3), res.output
    assert "Traceback" not in res.output
    store = open_store(settings)
    assert store.count("ratings") >= 2  # the store still answers, valid rows kept


def test_duckdb_views_survive_a_quote_in_the_home_path(synth_release: Path, tmp_path: Path) -> None:
    from movierec.data.ingest import ingest_release

    s = ParquetStore(tmp_path / "it's a home" / "store")
    ingest_release(s, synth_release)
    with s.duckdb() as con:
        row = con.execute("SELECT count(*) FROM ratings").fetchone()
    assert row is not None and row[0] == 20_000


def test_a_file_larger_than_the_memory_limit_is_refused_before_reading(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from movierec.settings import get_settings

    rows = "".join(f"{u},{m},4.0,1000000000\n" for u in range(1, 400) for m in range(1, 50))
    f = write(tmp_path / "ratings.csv", HEADER + rows)  # ~400 kB: needs ~2.4 MB to ingest
    write(tmp_path / "movies.csv", "movieId,title,genres\n1,Heat (1995),Action\n")
    monkeypatch.setenv("MOVIEREC_MEMORY_LIMIT", "1m")
    get_settings.cache_clear()
    res = runner.invoke(app, ["data", "ingest", str(f), "--kind", "ratings"])
    assert res.exit_code == 2, res.output
    assert "would need about" in res.output and "fit" in res.output
    assert "Traceback" not in res.output
    assert open_store(get_settings()).count("ratings") == 0  # nothing read, nothing stored
    res = runner.invoke(app, ["train", "--dataset", str(tmp_path), "--model", "popularity"])
    assert res.exit_code == 2 and "would need about" in res.output, res.output
    monkeypatch.delenv("MOVIEREC_MEMORY_LIMIT")
    get_settings.cache_clear()
    assert runner.invoke(app, ["data", "ingest", str(f), "--kind", "ratings"]).exit_code == 0
    assert open_store(get_settings()).count("ratings") == 399 * 49
