"""Page logic with Streamlit's AppTest against the real API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import Server, _free_port

APP = str(Path(__file__).resolve().parents[2] / "src" / "movierec" / "ui" / "app.py")


def _app(monkeypatch: pytest.MonkeyPatch, url: str, tmp_path: Path) -> AppTest:
    monkeypatch.setenv("MOVIEREC_API_URL", url)
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    monkeypatch.delenv("TMDB_API_KEY", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    return at.run()


def _cards(at: AppTest, prefix: str = "rec-") -> list[str]:
    return [b.key for b in at.button if b.key and b.key.startswith(f"{prefix}like-")]


def test_known_user_sees_k_cards_and_a_like_leaves_the_list(
    api: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = _app(monkeypatch, api.url, tmp_path)
    assert not at.exception and not at.error
    assert at.title[0].value == "Recommended for user 1"
    assert len(_cards(at)) == 10
    at.sidebar.slider(key="k").set_value(5).run()
    keys = _cards(at)
    assert len(keys) == 5
    first = keys[0]
    at.button(key=first).click().run()
    assert not at.exception
    assert first not in _cards(at) and len(_cards(at)) == 5
    taste = " ".join(m.value for m in at.sidebar.markdown)
    assert "Your recent taste" in taste
    assert any("Liked:" in c.value for c in at.sidebar.caption)


def test_more_like_this_and_strategy_switch(
    api: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = _app(monkeypatch, api.url, tmp_path)
    more = next(b for b in at.button if b.key and b.key.startswith("rec-more-"))
    more.click().run()
    assert any(s.value.startswith("More like") for s in at.subheader)
    at.sidebar.selectbox(key="strategy").set_value("mixed").run()
    assert at.sidebar.slider(key="alpha").value == 0.8 and not at.exception
    assert any("mixed(" in c.value for c in at.caption)


def test_new_user_onboarding(api: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = _app(monkeypatch, api.url, tmp_path)
    at.sidebar.radio(key="mode").set_value("I'm new").run()
    assert "Pick a few movies" in at.title[0].value
    at.text_input(key="onboard-q").input("Toy Story").run()
    add = next(b for b in at.button if b.key and b.key.startswith("add-"))
    add.click().run()
    assert any("You like" in m.value for m in at.markdown)
    assert len(_cards(at, "cold-")) == 10 and not at.exception


def test_other_pages(api: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = _app(monkeypatch, api.url, tmp_path)
    at.sidebar.radio(key="page").set_value("System status").run()
    assert at.title[0].value == "System status" and not at.exception
    assert any(s.value.startswith("Model ") for s in at.subheader)
    at.sidebar.radio(key="page").set_value("Popular").run()
    assert not at.exception and at.selectbox(key="pop-genre").value == "All"
    at.sidebar.radio(key="page").set_value("Rating prediction").run()
    at.text_input(key="pred-q").input("Heat").run()
    assert not at.exception and "★" in at.metric[0].value
    at.sidebar.radio(key="page").set_value("Evaluation").run()
    assert not at.exception


def test_api_down_is_a_message_not_a_trace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = _app(monkeypatch, f"http://127.0.0.1:{_free_port()}", tmp_path)
    assert not at.exception
    assert "not reachable" in at.error[0].value


def test_experiments_and_online_pages(
    ui_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    from movierec.data.feedback import FeedbackStore
    from movierec.data.served import ServedLog
    from movierec.experiments.design import Experiment, Variant, write_experiment

    home = tmp_path / "home"
    shutil.copytree(ui_home, home)
    exp = Experiment(
        "exp", "s", (Variant("control", "popularity"), Variant("treatment", "itemknn"))
    )
    write_experiment(home / "experiments.json", exp)
    store = FeedbackStore.for_settings(home, None, overlay=False)
    t0 = 1_700_000_000
    ServedLog(store.engine).add_many(
        [
            {
                "event_key": f"q{u}",
                "timestamp": t0,
                "user_id": u,
                "status": 200,
                "server": f"exp/{exp.assign(u).name}",
                "items": "1,2,3",
                "latency_ms": 4.0,
            }
            for u in range(1, 61)
        ]
    )
    store.add_events(
        [
            {
                "user_id": u,
                "movie_id": 2,
                "signal": "watch",
                "value": 1.0,
                "source": "t",
                "timestamp": float(t0 + 60),
                "event_key": f"w{u}",
            }
            for u in range(1, 61, 3)
        ]
    )
    store.close()
    (home / "logs").mkdir(exist_ok=True)
    shares = [0.1] * 10
    (home / "logs" / "drift-latest.json").write_text(
        json.dumps(
            {
                "level": "moderate",
                "values": {"rating_psi": 0.12, "activity_ks": 0.05},
                "reference": {"rating_share": shares},
                "current": {"rating_share": shares},
            }
        )
    )
    server = Server(home)
    server.start()
    try:
        at = _app(monkeypatch, server.url, tmp_path)
        at.sidebar.radio(key="page").set_value("Experiments").run()
        assert not at.exception and at.title[0].value == "Experiments"
        assert at.subheader[0].value.startswith("exp (ab")
        assert "Winner" in at.markdown[-1].value or any("Winner" in m.value for m in at.markdown)
        at.sidebar.radio(key="page").set_value("Online").run()
        assert not at.exception and at.title[0].value == "Online"
        assert len(at.dataframe) >= 1
        assert any("moderate" in m.value for m in at.markdown)  # the drift section
    finally:
        server.stop()
