from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from movierec.lifecycle.bundle import current_version, list_versions, load_bundle
from movierec.service.app import create_app
from movierec.service.engine import Engine
from movierec.settings import Settings
from tests.service.conftest import TOKEN

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _seen(home: Path, user_id: int) -> set[int]:
    b = load_bundle(home / "bundles")
    u = int(b.users.index(user_id)[0])
    model = b.models["ease"]
    return {int(b.items.ids[i]) for i in model.history[u].indices}


def test_health_ready_and_model(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready").json()
    assert ready["ready"] and ready["users"] > 50 and ready["items"] > 100
    assert ready["default_strategy"] == "ease"
    assert set(ready["strategies"]) == {"popularity", "itemknn", "als", "ease", "mf", "ranked"}
    model = client.get("/model", headers=ADMIN).json()
    assert model["version"] == ready["model_version"]
    assert len(model["data_fingerprint"]["sha256"]) == 64 and "files" not in model
    assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200


def test_not_ready_without_model(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(home=tmp_path / "empty"))) as c:
        assert c.get("/health").status_code == 200
        r = c.get("/ready")
        assert r.status_code == 503 and "movierec train" in r.json()["reason"]
        assert c.get("/recommend/user/1").status_code == 503


@pytest.mark.parametrize(
    "strategy", ["ease", "als", "itemknn", "popularity", "mixed", "mf", "ranked"]
)
def test_recommend_known_user(client: TestClient, home: Path, strategy: str) -> None:
    r = client.get(f"/recommend/user/1?k=7&strategy={strategy}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 7 and body["fallback"] is False
    assert body["source"].startswith(strategy if strategy != "mixed" else "mixed(")
    ids = [i["movie_id"] for i in body["items"]]
    assert len(set(ids)) == 7 and not set(ids) & _seen(home, 1)
    assert r.headers["X-Model-Version"] == body["model_version"]
    assert len(r.headers["X-Data-Fingerprint"]) == 64
    item = body["items"][0]
    assert item["title"] and isinstance(item["genres"], list) and item["year"]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_exclude_seen_false_may_return_seen(client: TestClient, home: Path) -> None:
    body = client.get("/recommend/user/1?k=50&exclude_seen=false&strategy=itemknn").json()
    assert {i["movie_id"] for i in body["items"]} & _seen(home, 1)


def test_explanations(client: TestClient) -> None:
    body = client.get("/recommend/user/1?k=5&explain=true").json()
    assert all(i["reasons"] for i in body["items"])
    text = " ".join(r for i in body["items"] for r in i["reasons"])
    assert "Because you liked" in text or "Matches your genres" in text
    assert client.get("/recommend/user/1?k=5").json()["items"][0]["reasons"] is None


def test_ranked_explanations_feedback_and_cold_start(client: TestClient) -> None:
    body = client.get("/recommend/user/1?k=5&explain=true&strategy=ranked").json()
    assert body["source"] == "ranked" and len(body["items"]) == 5
    assert all(i["reasons"] for i in body["items"])
    text = " ".join(r for i in body["items"] for r in i["reasons"])
    assert "Because you watched" in text
    first = body["items"][0]["movie_id"]
    fb = {"user_id": 1, "movie_id": first, "signal": "like"}
    assert client.post("/feedback", json=fb).status_code == 201
    after = client.get("/recommend/user/1?k=5&explain=true&strategy=ranked").json()
    assert after["source"] == "ranked_foldin"
    assert first not in {i["movie_id"] for i in after["items"]}
    assert any("Boosted by your likes" in i["reasons"] for i in after["items"])
    cold = client.get(f"/recommend_cold?liked={first}&k=4&strategy=ranked").json()
    assert cold["source"] == "ranked_foldin" and len(cold["items"]) == 4


def test_lone_fold_in_requests_are_scored_on_the_event_loop_with_the_same_answers(
    client: TestClient,
) -> None:
    state = client.app.state.movierec  # type: ignore[attr-defined]
    engine = state.engine
    assert engine.fold_in.quiet == state.work.alone and engine.batcher.spare
    movies = [int(m) for m in engine.bundle.items.ids[:3]]
    user = int(engine.bundle.users.ids[0])
    fb = {"user_id": user, "movie_id": movies[0], "signal": "like"}
    assert client.post("/feedback", json=fb).status_code == 201
    before = engine.batcher.inline
    # one request at a time: each the only expensive one in flight, so no hand-off
    user_answer = client.get(f"/recommend/user/{user}?k=6&strategy=ranked").json()
    cold_answer = client.get(f"/recommend_cold?liked={movies[1]},{movies[2]}&k=6").json()
    assert engine.batcher.inline == before + 2
    afresh = Engine(engine.bundle, cache_feedback=False)  # scored in a thread, nothing kept
    expected = afresh.recommend(user, 6, "ranked", feedback=state.feedback.user(user))
    assert [i["movie_id"] for i in user_answer["items"]] == [i.movie_id for i in expected.items]
    assert user_answer["source"] == "ranked_foldin"
    cold = afresh.cold(movies[1:3], [], 6, engine.bundle.default_strategy)
    assert [i["movie_id"] for i in cold_answer["items"]] == [i.movie_id for i in cold.items]


def test_without_a_spare_core_lone_rows_are_still_scored_on_the_loop(home: Path) -> None:
    with TestClient(create_app(Settings(home=home, spare_core=False))) as c:
        engine = c.app.state.movierec.engine  # type: ignore[attr-defined]
        assert not engine.batcher.spare
        movie = int(engine.bundle.items.ids[0])
        cold = c.get(f"/recommend_cold?liked={movie}&k=5&strategy=ranked")
        assert cold.status_code == 200 and len(cold.json()["items"]) == 5
        assert engine.batcher.inline == 1
        expected = Engine(engine.bundle, cache_feedback=False).cold([movie], [], 5, "ranked")
        assert [i["movie_id"] for i in cold.json()["items"]] == [i.movie_id for i in expected.items]


def test_explanations_of_cached_answers_on_the_event_loop_equal_the_worker_ones(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from movierec.service.routes import recommend

    state = client.app.state.movierec  # type: ignore[attr-defined]
    users = [int(u) for u in state.engine.bundle.users.ids[:6]]
    monkeypatch.setattr(recommend, "INLINE_EXPLAIN_MAX_ITEMS", 0)  # every one in a worker
    worker = [client.get(f"/recommend/user/{u}?k=7&explain=true&strategy=ranked") for u in users]
    monkeypatch.setattr(recommend, "INLINE_EXPLAIN_MAX_ITEMS", 10**9)
    for u in users:  # the answers are cached now: explained on the event loop
        assert recommend._explain_inline(state.engine, state, u, "ranked", 7, True)
    # k=6: not the stored explained answers of k=7 (reasons are per item, so the first six)
    inline = [client.get(f"/recommend/user/{u}?k=6&explain=true&strategy=ranked") for u in users]
    assert [r.json()["items"] for r in inline] == [r.json()["items"][:6] for r in worker]
    assert all(i["reasons"] for r in inline for i in r.json()["items"])
    # an explained answer is kept like a plain one: the same bytes again, from the cache
    engine = state.engine
    for u, r in zip(users, worker, strict=True):
        key = state.plain_key(u, "ranked" + recommend.EXPLAINED, 7)
        assert engine.cached_response(key) == r.content
        assert (
            client.get(f"/recommend/user/{u}?k=7&explain=true&strategy=ranked").content == r.content
        )


def test_unknown_user_falls_back(client: TestClient) -> None:
    body = client.get("/recommend/user/999999?k=5").json()
    assert body["fallback"] is True and body["source"] == "popularity_fallback"
    assert len(body["items"]) == 5


def test_query_plain_mixed_and_batch(client: TestClient) -> None:
    q = client.get("/recommend?user_id=1&k=5").json()
    assert len(q["items"]) == 5
    plain = client.get("/recommend/1")
    assert plain.headers["content-type"].startswith("text/plain")
    ids = plain.text.strip().split(",")
    assert len(ids) == 20 and all(i.isdigit() for i in ids)
    assert plain.text.strip().split(",")[:5] == [str(i["movie_id"]) for i in q["items"]]
    mixed = client.get("/recommend/mixed/1?k=5&alpha=0.0").json()
    pop = client.get("/popular?k=40").json()
    assert {i["movie_id"] for i in mixed["items"]} <= {p["movie_id"] for p in pop}
    batch = client.post("/recommend/batch", json={"user_ids": [1, 999999, 2], "k": 4}).json()
    assert [r["user_id"] for r in batch["results"]] == [1, 999999, 2]
    assert batch["results"][1]["fallback"] is True
    assert [i["movie_id"] for i in batch["results"][0]["items"]] == [
        i["movie_id"] for i in client.get("/recommend/user/1?k=4").json()["items"]
    ]


def test_movies_search_popular_similar(client: TestClient) -> None:
    pop = client.get("/popular?k=5").json()
    first = pop[0]
    movie = client.get(f"/movies/{first['movie_id']}").json()
    assert movie["title"] == first["title"] and movie["interactions"] > 0
    word = first["title"].split()[0]
    hits = client.get(f"/movies/search?q={word}&limit=5").json()
    assert hits and all(word.lower() in h["title"].lower() for h in hits)
    genre = first["genres"][0]
    assert all(genre in m["genres"] for m in client.get(f"/popular?k=5&genre={genre}").json())
    sim = client.get(f"/similar/movie/{first['movie_id']}?k=5").json()
    assert len(sim) == 5 and first["movie_id"] not in [s["movie_id"] for s in sim]
    assert client.get("/movies/999999999").status_code == 404
    assert client.get("/similar/movie/999999999").status_code == 404


def test_cold_start_and_session(client: TestClient) -> None:
    pop = [p["movie_id"] for p in client.get("/popular?k=3").json()]
    r = client.get(f"/recommend_cold?liked={pop[0]},{pop[1]},424242424&k=8").json()
    assert r["source"] == "ease_foldin" and r["unknown_movies"] == [424242424]
    assert not {pop[0], pop[1]} & {i["movie_id"] for i in r["items"]}
    als = client.get(f"/recommend_cold?liked={pop[0]}&k=5&strategy=als").json()
    assert als["source"] == "als_foldin" and len(als["items"]) == 5
    s = client.post(
        "/recommend/session", json={"liked": pop[:2], "disliked": [pop[2]], "k": 10}
    ).json()
    assert not set(pop) & {i["movie_id"] for i in s["items"]}
    assert client.get("/recommend_cold?liked=abc").status_code == 422
    assert client.get("/recommend_cold?liked=,,").status_code == 422
    assert client.get("/recommend_cold?liked=" + "0" * 5000).status_code == 422
    only_unknown = client.get("/recommend_cold?liked=424242424&k=3").json()
    assert only_unknown["fallback"] is True


def test_predict(client: TestClient) -> None:
    movie = client.get("/popular?k=1").json()[0]["movie_id"]
    p = client.get(f"/predict?user_id=1&movie_id={movie}").json()
    assert 0.5 <= p["rating"] <= 5.0 and p["source"] == "mf"
    assert (
        client.get(f"/predict?user_id=999999&movie_id={movie}").json()["source"] == "mf_item_bias"
    )
    assert client.get("/predict?user_id=1&movie_id=999999999").status_code == 404


def test_feedback_changes_the_next_list(client: TestClient, settings_for: Settings) -> None:
    before = client.get("/recommend/user/1?k=10").json()["items"]
    liked, disliked = before[0]["movie_id"], before[1]["movie_id"]
    r = client.post(
        "/feedback", json={"user_id": 1, "movie_id": liked, "signal": "like", "source": "test"}
    )
    assert r.status_code == 201 and r.json()["stored"] is True
    assert (
        client.post(
            "/feedback", json={"user_id": 1, "movie_id": disliked, "signal": "dislike"}
        ).status_code
        == 201
    )
    after = client.get("/recommend/user/1?k=10").json()
    ids = [i["movie_id"] for i in after["items"]]
    assert liked not in ids and disliked not in ids and len(ids) == 10
    assert after["source"] == "ease_foldin"
    # a new user who liked something gets fold-in recommendations, not the fallback
    client.post("/feedback", json={"user_id": 777777, "movie_id": liked, "signal": "like"})
    new = client.get("/recommend/user/777777?k=5").json()
    assert new["fallback"] is False and liked not in [i["movie_id"] for i in new["items"]]
    rating = {"user_id": 1, "movie_id": liked, "signal": "rating", "value": 4.5, "timestamp": 1.7e9}
    assert client.post("/feedback", json=rating).status_code == 201


@pytest.mark.parametrize(
    "payload",
    [
        {"user_id": 1, "movie_id": 1, "signal": "rating"},
        {"user_id": 1, "movie_id": 1, "signal": "rating", "value": 4.2},
        {"user_id": 1, "movie_id": 1, "signal": "rating", "value": 7},
        {"user_id": -1, "movie_id": 1, "signal": "like"},
        {"user_id": 1, "movie_id": 1, "signal": "love"},
        {"user_id": 1, "movie_id": 1, "signal": "like", "extra": 1},
    ],
)
def test_bad_feedback_is_422(client: TestClient, payload: dict[str, object]) -> None:
    r = client.post("/feedback", json=payload)
    assert r.status_code == 422 and r.json()["detail"]


def test_feedback_unknown_movie_is_404(client: TestClient) -> None:
    r = client.post("/feedback", json={"user_id": 1, "movie_id": 999999999, "signal": "like"})
    assert r.status_code == 404 and "not in the catalog" in r.json()["detail"]


def test_feedback_survives_restart(settings_for: Settings) -> None:
    with TestClient(create_app(settings_for)) as c:
        movie = c.get("/popular?k=1").json()[0]["movie_id"]
        c.post("/feedback", json={"user_id": 5, "movie_id": movie, "signal": "dislike"})
    with TestClient(create_app(settings_for)) as c:
        ids = [i["movie_id"] for i in c.get("/recommend/user/5?k=50").json()["items"]]
        assert movie not in ids


@pytest.mark.parametrize(
    ("method", "url", "body", "status"),
    [
        ("get", "/recommend/user/1?k=0", None, 422),
        ("get", "/recommend/user/1?k=501", None, 422),
        ("get", "/recommend/user/0", None, 422),
        ("get", "/recommend/user/abc", None, 422),
        ("get", "/recommend/user/1?strategy=bpr", None, 422),
        ("get", "/recommend/user/1?strategy=nope", None, 422),
        ("get", "/recommend/mixed/1?alpha=2", None, 422),
        ("get", "/predict?user_id=1", None, 422),
        ("get", "/movies/search?q=", None, 422),
        ("post", "/recommend/batch", {"user_ids": []}, 422),
        ("post", "/recommend/batch", {"user_ids": [1], "k": 0}, 422),
    ],
)
def test_bad_requests_are_4xx(
    client: TestClient, method: str, url: str, body: object, status: int
) -> None:
    r = (
        getattr(client, method)(url, json=body)
        if body is not None
        else getattr(client, method)(url)
    )
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_malformed_json_and_oversized_body(client: TestClient) -> None:
    r = client.post("/feedback", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    big = json.dumps({"user_ids": list(range(300_000))})
    r = client.post("/recommend/batch", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_admin_auth(client: TestClient) -> None:
    assert client.post("/admin/reload-model").status_code == 401
    assert (
        client.post("/admin/reload-model", headers={"Authorization": "Bearer wrong"}).status_code
        == 403
    )
    assert client.get("/debug/model-shapes").status_code == 401
    shapes = client.get("/debug/model-shapes", headers=ADMIN).json()
    assert shapes["als"]["item_factors"][1] == 8
    r = client.post("/admin/reload-model", headers=ADMIN)
    assert r.status_code == 200 and r.json()["reloaded"]


def test_corrupt_bundle_is_refused_and_old_one_keeps_serving(
    client: TestClient, home: Path
) -> None:
    root = home / "bundles"
    old = current_version(root)
    assert old is not None
    bad = "29990101T000000-corrupt-000000"
    shutil.copytree(root / old, root / bad)
    arrays = root / bad / "models" / "ease" / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:-100] + b"x" * 100)
    r = client.post("/admin/reload-model", headers=ADMIN, json={"version": bad})
    assert r.status_code == 409 and "checksum mismatch" in r.json()["detail"]
    assert client.get("/ready").json()["model_version"] == old
    assert client.get("/recommend/user/1?k=3").status_code == 200
    r = client.post("/admin/reload-model", headers=ADMIN, json={"version": "does-not-exist"})
    assert r.status_code == 409
    assert list_versions(root) == sorted([old, bad])


def test_metrics_endpoint(client: TestClient) -> None:
    client.get("/recommend/user/1")
    client.get("/recommend/user/999999")
    text = client.get("/metrics").text
    assert "movierec_requests_total" in text and "movierec_request_seconds_bucket" in text
    assert 'movierec_fallbacks_total{source="popularity_fallback"}' in text


def test_streamed_oversized_body_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"user_ids": ['
        for _ in range(200):
            yield b"1," * 5000
        yield b"1]}"

    r = client.post(
        "/recommend/batch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


def test_fast_path_sends_what_the_route_sends(client: TestClient) -> None:
    fast = client.get("/recommend/user/3?k=12")  # served from pre-rendered bytes
    routed = client.get("/recommend/user/3?k=12&exclude_seen=true")  # through FastAPI
    assert fast.status_code == routed.status_code == 200
    assert fast.json() == routed.json()
    assert fast.headers["X-Model-Version"] == routed.headers["X-Model-Version"]
    assert fast.headers["content-type"] == routed.headers["content-type"]
    assert client.get("/recommend/user/3?k=0").status_code == 422  # invalid k is not fast-pathed
    assert client.get("/recommend/user/00003").json() == client.get("/recommend/user/3").json()
    # warmed strategies (ranked) are pre-rendered too, parameters in any order
    fast = client.get("/recommend/user/3?strategy=ranked&k=7")
    routed = client.get("/recommend/user/3?k=7&strategy=ranked&exclude_seen=true")
    assert fast.json() == routed.json() and fast.json()["source"] == "ranked"
    assert client.get("/recommend/user/3?strategy=nope").status_code == 422
    assert client.get("/recommend/user/3?strategy=ranked&strategy=ease").status_code == 200


def test_rendered_answers_equal_the_response_models_json(trained_home: Path) -> None:
    """``out_json`` (the per-request answers' renderer) writes the bytes of the validated
    response model: known, fold-in, cold with unknown movies, fallback, explained, and a
    movie without a year or genres."""
    from movierec.data.user_feedback import UserFeedback
    from movierec.service.catalog import Item
    from movierec.service.engine import Engine
    from movierec.service.render import out, out_json

    engine = Engine(load_bundle(trained_home / "bundles"))
    movies = [int(m) for m in engine.bundle.items.ids[:3]]
    user = int(engine.bundle.users.ids[0])
    fb = UserFeedback()
    fb.apply(movies[0], "like", None)
    answers = [
        engine.recommend(user, 10, "ease"),
        engine.recommend(user, 7, "als", feedback=fb),
        engine.cold([movies[1], 424242424], [], 5, "ease"),
        engine.cold([424242424], [], 3, "ease"),
        engine.recommend(999_999_999, 4, "ease"),
    ]
    explained = engine.recommend(user, 5, "ease")
    engine.explain(explained, user, None)
    odd = engine.recommend(user, 3, "ease")
    odd.items.append(Item(7, 'Odd "title" é', None, [], -1.5e-7, "ease"))
    assert answers[2].unknown_movies == [424242424] and answers[3].fallback
    for ans, explain in [*((a, False) for a in answers), (explained, True), (odd, False)]:
        want = out(engine, ans, explain).model_dump_json().encode()
        assert out_json(engine, ans, explain) == want
    assert any(i["reasons"] for i in json.loads(out_json(engine, explained, True))["items"])
