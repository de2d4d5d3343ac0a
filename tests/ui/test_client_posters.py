from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from movierec.ui import posters as posters_mod
from movierec.ui.client import ApiClient, ApiError, ApiUnavailableError
from movierec.ui.posters import SIZE, Posters, generated_poster
from tests.helpers import Server, _free_port


def test_client_against_the_real_api(api: Server) -> None:
    c = ApiClient(api.url)
    assert c.health()["status"] == "ok" and c.ready()["ready"] is True
    recs = c.recommend(3, 7, "itemknn")  # (other tests give feedback as users 1 and 5)
    assert len(recs.items) == 7 and recs.source == "itemknn" and not recs.fallback
    assert all(r.reasons for r in recs.items)
    mixed = c.recommend(3, 5, "mixed", alpha=0.5)
    assert mixed.source.startswith("mixed(")
    toy = c.search("Toy Story", limit=3)
    assert toy and toy[0].title.startswith("Toy Story") and toy[0].tmdb_id == 862
    cold = c.cold([toy[0].movie_id], 5)
    assert len(cold.items) == 5 and toy[0].movie_id not in {r.movie_id for r in cold.items}
    assert len(c.similar(toy[0].movie_id, 4)) == 4
    assert len(c.popular(6, "Comedy")) == 6
    assert 0.5 <= c.predict(1, toy[0].movie_id)["rating"] <= 5.0
    with pytest.raises(ApiError) as e:
        c.movie(999_999_999)
    assert e.value.status == 404 and "not in the catalog" in e.value.message
    with pytest.raises(ApiError) as e:
        c.recommend(1, 0)
    assert e.value.status == 422


def test_client_reports_an_unreachable_api() -> None:
    c = ApiClient(f"http://127.0.0.1:{_free_port()}", timeout=1)
    with pytest.raises(ApiUnavailableError, match="not reachable"):
        c.health()


def test_generated_poster_is_a_png_of_the_right_size() -> None:
    data = generated_poster("Heat (1995)", 1995, ["Action", "Crime"])
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.size == SIZE
    # genre colours differ
    other = Image.open(io.BytesIO(generated_poster("Heat (1995)", 1995, ["Romance"])))
    assert img.getpixel((5, 5)) != other.getpixel((5, 5))


class _Tmdb(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/3/movie/862"):
            body = json.dumps({"poster_path": "/toy.png"}).encode()
            ctype = "application/json"
        elif self.path.startswith("/img/toy.png"):
            buf = io.BytesIO()
            Image.new("RGB", (10, 15), (1, 2, 3)).save(buf, "PNG")
            body, ctype = buf.getvalue(), "image/png"
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tmdb(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Tmdb)
    url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(posters_mod, "TMDB_API", url + "/3/movie/{id}")
    monkeypatch.setattr(posters_mod, "TMDB_IMAGES", url + "/img{path}")
    yield url
    server.shutdown()


def test_tmdb_posters_are_fetched_in_parallel_cached_and_fall_back(
    tmdb: str, tmp_path: Path
) -> None:
    p = Posters(tmp_path / "posters", tmdb_key="k")
    ids = {1: 862, 2: 404404, 3: None}
    got = p.many(
        [(1, "Toy Story (1995)", 1995, ("Animation",)), (2, "X", None, ()), (3, "Y", 2000, ())],
        tmdb_ids=ids.get,
    )
    assert Image.open(io.BytesIO(got[1])).size == (10, 15)  # from "TMDB"
    assert Image.open(io.BytesIO(got[2])).size == SIZE  # 404: generated
    assert Image.open(io.BytesIO(got[3])).size == SIZE  # no TMDB id: generated
    assert (tmp_path / "posters" / "1.tmdb.png").exists()
    # without a key nothing goes to the network
    offline = Posters(tmp_path / "off")
    assert Image.open(io.BytesIO(offline.get(1, "Toy Story", 1995, [], 862))).size == SIZE
