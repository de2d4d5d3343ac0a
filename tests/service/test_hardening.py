"""Hardening (issue #19): strict inputs, no 5xx from any input, every 5xx counted, credentials
for writes and admin, a bundle that verifies completely, a pinned reload, a start-up that falls
back from a corrupt CURRENT, a byte-bounded answer cache and bounded work per request."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movierec.lifecycle.bundle import (
    BundleError,
    current_version,
    list_versions,
    load_bundle,
    set_current,
)
from movierec.service.app import create_app
from movierec.settings import Settings
from tests.service.conftest import ADMIN, TOKEN

KEY = "test-api-key"
UNICODE_DIGITS = ["²", "٣", "３", "¹0", "᠑", "1\u0663"]
BIG_INTS = [2**31, 2**63, 2**64 + 1, 10**30, -(2**63) - 1]


@pytest.fixture
def keyed(home: Path) -> Iterator[TestClient]:
    s = Settings(home=home, admin_token=TOKEN, api_key=KEY, warm_cache=False)
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        yield c


def _metric(client: TestClient, status: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("movierec_requests_total{") and f'status="{status}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("uid", [*UNICODE_DIGITS, "0", "-1", "1.0", "1e3", " 1", "99999999999"])
def test_non_ascii_and_out_of_range_ids_are_422(keyed: TestClient, uid: str) -> None:
    for path in (f"/recommend/user/{uid}", f"/recommend/{uid}", f"/movies/{uid}"):
        r = keyed.get(path)
        assert r.status_code == 422, (path, r.status_code, r.text)
        json.loads(r.text)  # the 4xx body is serialisable JSON
    r = keyed.get("/recommend", params={"user_id": uid})
    assert r.status_code == 422


@pytest.mark.parametrize("big", BIG_INTS)
def test_integers_beyond_32_bits_in_json_are_422(keyed: TestClient, big: int) -> None:
    r1 = keyed.post("/recommend/batch", json={"user_ids": [1, big], "k": 5})
    r2 = keyed.post("/recommend/session", json={"liked": [big], "k": 5})
    r3 = keyed.post("/recommend/session", json={"disliked": [big], "liked": [1]})
    fb = {"user_id": big, "movie_id": 1, "signal": "like"}
    r4 = keyed.post("/feedback", json=fb, headers={"X-API-Key": KEY})
    for r in (r1, r2, r3, r4):
        assert r.status_code == 422, r.text
        assert len(r.text) < 5000


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_json_are_422(keyed: TestClient, literal: str) -> None:
    bodies = [
        ("/recommend/batch", f'{{"user_ids": [1], "k": {literal}}}'),
        ("/recommend/session", f'{{"liked": [1], "k": {literal}}}'),
        ("/feedback", f'{{"user_id": 1, "movie_id": 1, "signal": "rating", "value": {literal}}}'),
        ("/feedback", f'{{"user_id": 1, "movie_id": 1, "signal": "like", "timestamp": {literal}}}'),
    ]
    for path, text in bodies:
        r = keyed.post(
            path,
            content=text,
            headers={"Content-Type": "application/json", "X-API-Key": KEY},
        )
        assert r.status_code == 422, (path, text, r.status_code, r.text)
        json.loads(r.text)


def test_strings_are_not_ids(keyed: TestClient) -> None:
    r = keyed.post("/recommend/batch", json={"user_ids": ["1"], "k": 5})
    assert r.status_code == 422
    r = keyed.post("/recommend/batch", json={"user_ids": [1], "k": "5"})
    assert r.status_code == 422


def test_validation_errors_quote_little_of_the_input(keyed: TestClient) -> None:
    r = keyed.post("/recommend/session", json={"liked": ["x" * 100_000]})
    assert r.status_code == 422 and len(r.text) < 2000


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ٣٣٣".encode(),
        "Bearer tökén".encode("latin-1"),
        b"Bearer \xff\xfe",
        b"Bearer ",
        b"Digest username=x",
        b"Basic !!!",
        b"Bearer a b",
    ],
)
def test_malformed_credentials_are_401_never_500(keyed: TestClient, header: bytes) -> None:
    for method, path in (("POST", "/admin/reload-model"), ("GET", "/model")):
        r = keyed.request(method, path, headers={"Authorization": header})
        assert r.status_code == 401, (path, header, r.text)
    r = keyed.post(
        "/feedback",
        json={"user_id": 1, "movie_id": 1, "signal": "like"},
        headers={"X-API-Key": header},
    )
    assert r.status_code == 401


def test_admin_routes_need_the_token(keyed: TestClient) -> None:
    for method, path in (
        ("GET", "/model"),
        ("GET", "/debug/model-shapes"),
        ("POST", "/admin/reload-model"),
    ):
        assert keyed.request(method, path).status_code == 401
        wrong = {"Authorization": "Bearer wrong-token"}
        assert keyed.request(method, path, headers=wrong).status_code == 403
        query = keyed.request(method, f"{path}?token={TOKEN}&access_token={TOKEN}")
        assert query.status_code == 401  # credentials in the query string are not accepted
        assert keyed.request(method, path, headers=ADMIN).status_code == 200


def _movie(c: TestClient) -> int:
    return int(c.app.state.movierec.engine.bundle.items.ids[0])  # type: ignore[attr-defined]


def test_feedback_needs_the_api_key_when_one_is_set(keyed: TestClient) -> None:
    body = {"user_id": 1, "movie_id": _movie(keyed), "signal": "like"}
    assert keyed.post("/feedback", json=body).status_code == 401
    assert keyed.post("/feedback", json=body, headers={"X-API-Key": "nope"}).status_code == 403
    assert keyed.post("/feedback", json=body, headers={"X-API-Key": KEY}).status_code == 201
    assert keyed.post("/feedback", json=body, headers=ADMIN).status_code == 201


def test_writes_open_without_a_key_warn_at_start_up(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(Settings(home=home, warm_cache=False))) as c:
        r = c.post("/feedback", json={"user_id": 1, "movie_id": _movie(c), "signal": "like"})
        assert r.status_code == 201
    assert "writes are open" in caplog.text


def test_server_errors_are_counted_logged_and_hide_the_trace(
    keyed: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    before = _metric(keyed, "500")
    engine = keyed.app.state.movierec.engine  # type: ignore[attr-defined]

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("planted failure")

    monkeypatch.setattr(engine, "cold", boom)
    r = keyed.get("/recommend_cold?liked=1,2", headers={"X-Request-ID": "req-42"})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error", "request_id": "req-42"}
    assert r.headers["X-Request-ID"] == "req-42"
    assert "planted failure" not in r.text and "Traceback" not in r.text
    assert _metric(keyed, "500") == before + 1
    assert "req-42" in caplog.text and "planted failure" in caplog.text


def test_every_response_has_a_request_id(keyed: TestClient) -> None:
    a, b = keyed.get("/health"), keyed.get("/health")
    assert a.headers["X-Request-ID"] != b.headers["X-Request-ID"]
    assert keyed.get("/health", headers={"X-Request-ID": "bad id!"}).headers["X-Request-ID"]


def test_batch_over_the_budget_is_refused_before_work(home: Path) -> None:
    s = Settings(home=home, warm_cache=False, max_batch_users=50, max_batch_items=200)
    with TestClient(create_app(s)) as c:
        assert c.post("/recommend/batch", json={"user_ids": [1] * 51}).status_code == 422
        r = c.post("/recommend/batch", json={"user_ids": [1] * 30, "k": 10})
        assert r.status_code == 422 and "200" in r.json()["detail"]
        assert c.post("/recommend/batch", json={"user_ids": [1] * 20, "k": 10}).status_code == 200
    s = Settings(home=home, warm_cache=False, max_response_bytes=4096)
    with TestClient(create_app(s)) as c:
        r = c.post("/recommend/batch", json={"user_ids": [1, 2, 3], "k": 50})
        assert r.status_code == 422 and "bytes" in r.json()["detail"]


def test_saturated_expensive_requests_get_503_with_retry_after(home: Path) -> None:
    s = Settings(home=home, warm_cache=False, work_slots=1, work_queue=0)
    with TestClient(create_app(s)) as c:
        state = c.app.state.movierec  # type: ignore[attr-defined]
        lim = state.work.limiter
        # hold the only slot, as a long computation would
        holder = object()
        c.portal.call(lim.acquire_on_behalf_of, holder)  # type: ignore[union-attr]
        try:
            r = c.get("/recommend_cold?liked=1,2")
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
            assert c.get("/health").status_code == 200
        finally:
            c.portal.call(lim.release_on_behalf_of, holder)  # type: ignore[union-attr]
        assert c.get("/recommend_cold?liked=1,2").status_code == 200


# ------------------------------------------------------------------ bundles
def _tamper(root: Path, version: str, how: str) -> None:
    path = root / version
    manifest = json.loads((path / "manifest.json").read_text())
    files = manifest["files"]
    arrays = next(k for k in files if k.endswith("arrays.npz"))
    if how == "no-files":
        del manifest["files"]
    elif how == "empty-files":
        manifest["files"] = {}
    elif how == "files-list":
        manifest["files"] = []
    elif how == "unlisted":
        (path / "models" / "extra.bin").write_bytes(b"x")
    elif how == "traversal-file":
        manifest["files"]["../../../../etc/hostname"] = "0" * 64
    elif how == "traversal-strategy":
        manifest["strategies"]["../../../evil/als"] = manifest["strategies"]["ease"]
    elif how == "missing":
        (path / arrays).unlink()
    elif how == "flipped":
        data = bytearray((path / arrays).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (path / arrays).write_bytes(bytes(data))
    elif how == "changed-unlisted":
        del manifest["files"][arrays]
        data = bytearray((path / arrays).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (path / arrays).write_bytes(bytes(data))
    (path / "manifest.json").write_text(json.dumps(manifest))


def _copy_version(root: Path) -> str:
    src = current_version(root)
    assert src is not None
    dst = f"{src}-copy"
    shutil.copytree(root / src, root / dst)
    return dst


TAMPERS = [
    "no-files",
    "empty-files",
    "files-list",
    "unlisted",
    "traversal-file",
    "traversal-strategy",
    "missing",
    "flipped",
    "changed-unlisted",
]


@pytest.mark.parametrize("how", TAMPERS)
def test_a_tampered_bundle_is_refused_and_the_old_one_serves(
    keyed: TestClient, home: Path, how: str
) -> None:
    root = home / "bundles"
    serving = keyed.get("/ready").json()["model_version"]
    bad = _copy_version(root)
    _tamper(root, bad, how)
    with pytest.raises(BundleError) as e:
        load_bundle(root, bad)
    assert str(root) not in str(e.value) and "/etc" not in str(e.value)
    r = keyed.post("/admin/reload-model", json={"version": bad}, headers=ADMIN)
    assert r.status_code == 409, r.text
    assert str(home) not in r.text
    assert keyed.get("/ready").json()["model_version"] == serving
    assert keyed.get("/recommend/user/1").status_code == 200


@pytest.mark.parametrize("version", ["..", "../bundles", "a/../b", ".hidden", "x" * 200])
def test_reload_refuses_odd_versions(keyed: TestClient, version: str) -> None:
    r = keyed.post("/admin/reload-model", json={"version": version}, headers=ADMIN)
    assert r.status_code in (409, 422), r.text
    assert str(Path.cwd()) not in r.text


def test_a_pinned_reload_stays_pinned(home: Path) -> None:
    root = home / "bundles"
    first = current_version(root)
    assert first is not None
    second = _copy_version(root)
    s = Settings(home=home, admin_token=TOKEN, warm_cache=False, reload_poll_s=0.1)
    with TestClient(create_app(s)) as c:
        r = c.post("/admin/reload-model", json={"version": second}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["model_version"] == second
        assert current_version(root) == second  # the pin moved CURRENT (one rule)
        time.sleep(1.0)  # ten poller cycles
        assert c.get("/ready").json()["model_version"] == second
        set_current(root, first)  # a later publish still moves it
        deadline = time.time() + 10
        while c.get("/ready").json()["model_version"] != first and time.time() < deadline:
            time.sleep(0.1)
        assert c.get("/ready").json()["model_version"] == first


def test_a_corrupt_current_at_start_up_falls_back_to_a_verified_version(home: Path) -> None:
    root = home / "bundles"
    good = current_version(root)
    assert good is not None
    bad = _copy_version(root)
    _tamper(root, bad, "flipped")
    set_current(root, bad)
    assert list_versions(root)[-1] == bad
    with TestClient(create_app(Settings(home=home, warm_cache=False))) as c:
        ready = c.get("/ready").json()
        assert ready["ready"] and ready["model_version"] == good
        assert "movierec_bundle_fallbacks_total 1.0" in c.get("/metrics").text


# ------------------------------------------------------------------ cache
def test_the_answer_cache_stays_under_its_byte_budget(home: Path) -> None:
    budget = 1024 * 1024
    s = Settings(home=home, warm_cache=False, answer_cache_bytes=budget)
    with TestClient(create_app(s)) as c:
        engine = c.app.state.movierec.engine  # type: ignore[attr-defined]
        users = engine.bundle.users.ids[:150].tolist()
        for u in users:
            for k in (5, 10, 20, 40):
                assert c.get(f"/recommend/user/{u}?k={k}").status_code == 200
            assert engine.cache.bytes <= budget
        assert engine.cache.evictions > 0
        text = c.get("/metrics").text
        assert "movierec_answer_cache_bytes" in text
        assert "movierec_answer_cache_evictions_total" in text


# ------------------------------------------------------------------ fuzz
_ids = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(UNICODE_DIGITS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(uid=_ids, k=_ids, liked=st.lists(_ids, max_size=4))
def test_property_no_input_gives_a_server_error(
    keyed: TestClient, uid: object, k: object, liked: list[object]
) -> None:
    body = json.dumps({"user_ids": [uid], "k": k}, allow_nan=True)
    r = keyed.post("/recommend/batch", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, r.text
    body = json.dumps({"liked": liked, "k": k}, allow_nan=True)
    r = keyed.post("/recommend/session", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, r.text
    r = keyed.get(f"/recommend/user/{quote(str(uid), safe='')}", params={"k": str(k)})
    assert r.status_code < 500, r.text


# ------------------------------------------------------------------ fallback chain
def test_the_fallback_chain_falls_through_to_an_entry_that_can_score(home: Path) -> None:
    s = Settings(home=home, warm_cache=False, fallback_chain=("itemknn", "als", "popularity"))
    with TestClient(create_app(s)) as c:
        r = c.get("/recommend/user/2000000000?k=10").json()
        popular = [i["movie_id"] for i in c.get("/popular?k=10").json()]
    assert r["fallback"] is True and r["source"] == "popularity_fallback"
    assert [i["movie_id"] for i in r["items"]] == popular


def test_a_model_says_when_it_cannot_score_an_empty_history(home: Path) -> None:
    import numpy as np
    import scipy.sparse as sp

    bundle = load_bundle(home / "bundles")
    empty = sp.csr_matrix((2, len(bundle.items)), dtype=np.float32)
    for name in ("itemknn", "als", "ease"):
        assert np.isnan(bundle.models[name].score_rows(empty)).all(), name
    assert np.isfinite(bundle.models["popularity"].score_rows(empty)).all()
    one = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, len(bundle.items)), dtype=np.float32)
    assert np.isfinite(bundle.models["itemknn"].score_rows(one)).any()


# ------------------------------------------------------------------ start-up
def test_readiness_does_not_wait_for_warming(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from movierec.service.engine import Engine

    release = threading.Event()
    started = threading.Event()
    real_warm = Engine.warm

    def slow_warm(self: Engine, *args: object, **kwargs: object) -> int:
        started.set()
        release.wait(30)
        return real_warm(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "warm", slow_warm)
    with TestClient(create_app(Settings(home=home, warm_cache=True))) as c:
        assert started.wait(10)
        ready = c.get("/ready")
        assert ready.status_code == 200 and ready.json()["ready"]  # while warming is blocked
        assert c.get("/recommend/user/1").status_code == 200
        engine = c.app.state.movierec.engine  # type: ignore[attr-defined]
        release.set()
        deadline = time.time() + 30
        while len(engine.cache) < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert len(engine.cache) >= 2  # the background warm then filled the cache


def test_the_most_active_users_are_warmed_first(home: Path) -> None:
    import numpy as np

    with TestClient(create_app(Settings(home=home, warm_cache=False))) as c:
        engine = c.app.state.movierec.engine  # type: ignore[attr-defined]
        order = engine.most_active(10)
        sizes = np.diff(engine.overlay.history.indptr)
        assert sizes[order].tolist() == sorted(sizes.tolist(), reverse=True)[:10]
        assert engine.warm("ease", order) == 10 and len(engine.cache) == 10


def test_readiness_says_while_the_rankers_compile(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ready at once; ``compiling`` is true until the background compilation is over."""
    import threading

    from movierec.service import state as state_module

    release, started = threading.Event(), threading.Event()

    def slow_compile(*args: object, **kwargs: object) -> None:  # a compilation that waits
        started.set()
        release.wait(30)

    monkeypatch.setattr(state_module, "compile_rankers", slow_compile)
    with TestClient(create_app(Settings(home=home, ranker_compile=True))) as c:
        assert started.wait(10)
        body = c.get("/ready").json()
        assert body["ready"] and body["compiling"]
        release.set()
        deadline = time.time() + 30
        while c.get("/ready").json()["compiling"] and time.time() < deadline:
            time.sleep(0.05)
        assert not c.get("/ready").json()["compiling"]


def test_the_first_load_is_kept_out_of_collections_and_a_reload_lets_it_go(home: Path) -> None:
    """After the first load what exists is frozen (no full collection walks it); a reload
    unfreezes it, so the replaced engine's reference cycles are collected as usual."""
    import gc

    with TestClient(create_app(Settings(home=home))) as c:
        state = c.app.state.movierec  # type: ignore[attr-defined]
        assert gc.get_freeze_count() > 0
        state.load()
        assert gc.get_freeze_count() == 0
        assert c.get("/recommend/user/1").status_code == 200
