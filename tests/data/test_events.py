from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.data.events import parse_event_file, parse_lines, slug_index, title_slug
from tests.conftest import write

LOG = """2024-03-01T10:15:02,4012,GET /data/m/the+matrix+1999/1.mpg
2024-03-01T10:16:02,4012,GET /data/m/the+matrix+1999/2.mpg
2024-03-01T10:16:30,4012,GET /data/m/the+matrix+1999/2.mpg
2024-03-01T10:17:02,4012,GET /data/m/2571/3.mpg
2024-03-01T11:00:00.250,4012,GET /rate/the+matrix+1999=4
2024-03-02T09:00:00,4012,GET /rate/the+matrix+1999=5
2024-03-01T10:17:00,77,recommendation request node7:8082, status 200, result: 1, 2, 3, 87 ms
2024-03-01T10:18:00,77,GET /data/m/unknown+film+2020/1.mpg
garbage line
2024-03-01T10:19:00,abc,GET /rate/2571=4
2024-03-01T10:19:00,77,GET /rate/2571=9
2024-03-01T10:20:00,77,POST /something
"""


def _slugs() -> dict[str, int]:
    movies = pa.table({"movie_id": [2571, 1], "title": ["Matrix, The (1999)", "Toy Story (1995)"]})
    return slug_index(movies)


def test_title_slug() -> None:
    assert title_slug("Matrix, The (1999)") == "the+matrix+1999"
    assert title_slug("Lord of the Rings: The Return of the King, The (2003)") == (
        "the+lord+of+the+rings+the+return+of+the+king+2003"
    )


def test_parse_events_with_event_timestamps() -> None:
    log = parse_lines(LOG.splitlines(), slugs=_slugs())
    assert log.watches.num_rows == 4
    # ratings: the later rate event wins, with its own timestamp (not the parse time)
    assert log.ratings.to_pylist() == [
        {"user_id": 4012, "movie_id": 2571, "rating": 5.0, "timestamp": 1709370000}
    ]
    assert log.requests.to_pylist()[0]["latency_ms"] == 87.0
    assert log.requests.to_pylist()[0]["result"] == "1, 2, 3"
    depth = log.watch_depth().to_pylist()
    assert depth == [{"user_id": 4012, "movie_id": 2571, "rating": 3.0, "timestamp": 1709288222}]
    rep = log.report
    assert rep.input_rows == 12
    assert [(r.line, r.field) for r in rep.rejects if "duplicate" not in r.reason] == [
        (8, "movie"),
        (9, "*"),
        (10, "user"),
        (11, "rating"),
        (12, "request"),
    ]
    assert rep.reject_rows == 5 and rep.duplicate_rows == 1
    assert rep.clean_rows == 12 - 5 - 1


def test_numeric_ids_need_no_catalog() -> None:
    log = parse_lines(["2024-03-01T10:15:02,1,GET /data/m/50/7.mpg"])
    assert log.watches.to_pylist()[0]["movie_id"] == 50
    log2 = parse_lines(["2024-03-01T10:15:02,1,GET /data/m/heat+1995/7.mpg"])
    assert log2.watches.num_rows == 0 and log2.report.reject_rows == 1


def test_event_file_with_undecodable_line(tmp_path: Path) -> None:
    p = write(tmp_path / "e.log", b"2024-03-01T10:15:02,1,GET /data/m/50/7.mpg\n\xff\xfe,1,x\n")
    log = parse_event_file(p)
    assert log.watches.num_rows == 1
    assert [(r.line, r.reason) for r in log.report.rejects] == [
        (2, "undecodable bytes (not utf-8)")
    ]


_FAST_LINE = st.builds(
    lambda t, u, kind, m, x: f"{t},{u},{kind.format(m=m, x=x)}",
    st.sampled_from(
        [
            "2024-03-01T10:15:02",
            "2024-02-30T10:15:02",
            "1995-01-01T00:00:00",
            "2099-01-01T00:00:00",
            "2024-03-01 10:15:02",
            "1709288102",
            " 2024-03-01T10:15:02",
        ]
    ),
    st.sampled_from(["1", "0", "007", "2147483647", "2147483648", "-3", "x", " 5"]),
    st.sampled_from(
        [
            "GET /data/m/{m}/{x}.mpg",
            "GET /rate/{m}={x}",
            "GET /rate/{m}={x} ",
            "recommendation request n:1, status 200, result: {m}, {x}, 5 ms",
        ]
    ),
    st.sampled_from(["12", "0", "the+matrix+1999", "2147483648", "99"]),
    st.sampled_from(["4", "4.5", "0.5", "5.5", "0", "3.25", "7", "1234567890", "x"]),
)


@given(st.lists(st.one_of(_FAST_LINE, st.text(max_size=40)), max_size=40))
@settings(max_examples=150, deadline=None)
def test_vectorised_path_gives_exactly_the_line_by_line_result(lines: list[str]) -> None:
    slugs = {"the+matrix+1999": 2571}
    a = parse_lines(lines, slugs=slugs, now=1_800_000_000, vectorised=False)
    b = parse_lines(lines, slugs=slugs, now=1_800_000_000, vectorised=True)
    assert a.watches.equals(b.watches) and a.ratings.equals(b.ratings)
    assert a.requests.equals(b.requests)
    assert [r.to_dict() for r in a.report.rejects] == [r.to_dict() for r in b.report.rejects]
    assert (a.report.input_rows, a.report.clean_rows) == (b.report.input_rows, b.report.clean_rows)
