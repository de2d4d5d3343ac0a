"""Answers of users with feedback since training, kept by their whole feedback state."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from movierec.data.user_feedback import UserFeedback
from movierec.lifecycle.bundle import Bundle, load_bundle
from movierec.service.app import create_app
from movierec.service.engine import CACHE_N, Answer, Engine
from movierec.service.routes import recommend
from movierec.settings import Settings


@pytest.fixture(scope="module")
def bundle(trained_home: Path) -> Bundle:
    return load_bundle(trained_home / "bundles")


def _liked(bundle: Bundle, *positions: int) -> UserFeedback:
    fb = UserFeedback()
    for p in positions:
        fb.apply(int(bundle.items.ids[p]), "like", None)
    return fb


def _ids(answer: Answer) -> list[int]:
    return [i.movie_id for i in answer.items]


@pytest.mark.parametrize("strategy", ["ranked", "ease"])
def test_kept_answers_equal_fresh_ones_and_the_next_event_changes_them_at_once(
    bundle: Bundle, strategy: str
) -> None:
    kept, fresh = Engine(bundle), Engine(bundle, cache_feedback=False)
    user = int(bundle.users.ids[3])
    fb = _liked(bundle, 5, 17)
    first = kept.recommend(user, 10, strategy, feedback=fb)
    batches = kept.batcher.batches
    again = kept.recommend(user, 10, strategy, feedback=fb.copy())
    assert kept.batcher.batches == batches  # a lookup: nothing scored
    assert _ids(first) == _ids(again) == _ids(fresh.recommend(user, 10, strategy, feedback=fb))
    assert again.source == f"{strategy}_foldin"
    # a smaller k is a slice of the kept top-N
    assert _ids(kept.recommend(user, 3, strategy, feedback=fb)) == _ids(first)[:3]
    assert kept.batcher.batches == batches
    # the user likes the top answer: the very next request scores the new state
    top = _ids(first)[0]
    fb.apply(top, "like", None)
    after = kept.recommend(user, 10, strategy, feedback=fb)
    assert kept.batcher.batches == batches + 1
    assert top not in _ids(after)
    assert _ids(after) == _ids(fresh.recommend(user, 10, strategy, feedback=fb))


def test_off_scores_every_request_and_a_large_k_is_not_kept(bundle: Bundle) -> None:
    fresh, kept = Engine(bundle, cache_feedback=False), Engine(bundle)
    user = int(bundle.users.ids[0])
    fb = _liked(bundle, 2)
    for n in (1, 2, 3):
        fresh.recommend(user, 10, "ranked", feedback=fb)
        assert fresh.batcher.batches == n
    big = CACHE_N + 5
    assert bundle.items.ids.size > 2 * big
    for n in (1, 2):
        assert len(kept.recommend(user, big, "ease", feedback=fb).items) == big
        assert kept.batcher.batches == n


def test_unknown_users_with_the_same_feedback_share_an_answer(bundle: Bundle) -> None:
    engine = Engine(bundle)
    fb = _liked(bundle, 1, 9, 30)
    a = engine.recommend(10**9, 10, "ranked", feedback=fb)
    batches = engine.batcher.batches
    b = engine.recommend(10**9 + 1, 10, "ranked", feedback=fb.copy())
    assert engine.batcher.batches == batches
    assert _ids(a) == _ids(b) and b.user_id == 10**9 + 1
    # a known user with the same feedback is not an unknown one: their own history counts
    engine.recommend(int(bundle.users.ids[0]), 10, "ranked", feedback=fb)
    assert engine.batcher.batches == batches + 1


def test_exclude_seen_is_part_of_the_key(bundle: Bundle) -> None:
    engine = Engine(bundle)
    user = int(bundle.users.ids[1])
    fb = _liked(bundle, 4)
    engine.recommend(user, 10, "ease", feedback=fb)
    engine.recommend(user, 10, "ease", feedback=fb, exclude_seen=False)
    assert engine.batcher.batches == 2


def test_cold_starts_with_the_same_liked_movies_share_an_answer(bundle: Bundle) -> None:
    kept, fresh = Engine(bundle), Engine(bundle, cache_feedback=False)
    liked = [int(m) for m in bundle.items.ids[[3, 8, 13]]]
    a = kept.cold(liked, [], 10, "ranked")
    b = kept.cold(list(reversed(liked)), [], 10, "ranked")  # order does not matter
    assert kept.batcher.batches == 1
    assert _ids(a) == _ids(b) == _ids(fresh.cold(liked, [], 10, "ranked"))
    kept.cold(liked, [int(bundle.items.ids[0])], 10, "ranked")  # a dislike is a new state
    assert kept.batcher.batches == 2


def _service(home: Path, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(home=home, **settings)))  # type: ignore[arg-type]


@pytest.mark.parametrize("explain", [False, True])
def test_the_route_serves_a_feedback_states_answer_as_bytes_until_the_next_event(
    home: Path, explain: bool
) -> None:
    with _service(home) as client:
        state = client.app.state.movierec  # type: ignore[attr-defined]
        assert state.engine.batcher.threads == Settings().scoring_threads == 2
        user = int(state.engine.bundle.users.ids[2])
        movies = [int(m) for m in state.engine.bundle.items.ids[:50]]
        like = {"user_id": user, "movie_id": movies[7], "signal": "like"}
        assert client.post("/feedback", json=like).status_code < 300
        path = f"/recommend/user/{user}?k=8&strategy=ranked&explain={str(explain).lower()}"
        first = client.get(path)
        assert first.status_code == 200 and first.json()["source"] == "ranked_foldin"
        name = "ranked" + (recommend.EXPLAINED if explain else "")
        key = state.answer_key(user, name, 8, state.feedback.user(user))
        assert key is not None and state.engine.cached_response(key) == first.content
        batches = state.engine.batcher.batches
        assert client.get(path).content == first.content
        assert state.engine.batcher.batches == batches
        top = first.json()["items"][0]["movie_id"]
        like = {"user_id": user, "movie_id": top, "signal": "like"}
        assert client.post("/feedback", json=like).status_code < 300
        after = client.get(path).json()
        assert top not in [i["movie_id"] for i in after["items"]]
        assert state.engine.batcher.batches == batches + 1
        if explain:
            assert all(i["reasons"] for i in after["items"])


def test_the_setting_off_scores_every_request(home: Path) -> None:
    with _service(home, cache_feedback_answers=False, scoring_threads=1) as client:
        state = client.app.state.movierec  # type: ignore[attr-defined]
        assert state.engine.batcher.threads == 1  # the setting reaches the batcher
        user = int(state.engine.bundle.users.ids[4])
        movie = int(state.engine.bundle.items.ids[3])
        like = {"user_id": user, "movie_id": movie, "signal": "like"}
        assert client.post("/feedback", json=like).status_code < 300
        assert state.answer_key(user, "ranked", 8, state.feedback.user(user)) is None
        bodies = [client.get(f"/recommend/user/{user}?k=8&strategy=ranked").content for _ in "ab"]
        assert bodies[0] == bodies[1] and state.engine.batcher.batches == 2


def test_a_state_seen_before_is_answered_as_it_was(bundle: Bundle) -> None:
    engine = Engine(bundle)
    user = int(bundle.users.ids[5])
    movie = int(bundle.items.ids[11])
    fb = UserFeedback()
    fb.apply(movie, "like", None)
    first = engine.recommend(user, 10, "ranked", feedback=fb)
    fb.apply(movie, "dislike", None)  # the latest signal wins: another state
    disliked = engine.recommend(user, 10, "ranked", feedback=fb)
    assert engine.batcher.batches == 2
    fb.apply(movie, "like", None)  # the first state again
    again = engine.recommend(user, 10, "ranked", feedback=fb)
    assert engine.batcher.batches == 2
    assert _ids(again) == _ids(first)
    assert movie not in _ids(disliked) and movie not in _ids(again)
