"""movierec in the browser: recommendations, onboarding, feedback, status and evaluation.

Run with ``movierec ui`` (or ``streamlit run src/movierec/ui/app.py``). The app talks to the
API over HTTP only (``MOVIEREC_API_URL``, default ``http://127.0.0.1:8000``) through
:mod:`movierec.ui.client`; it never imports models.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from movierec.ui.client import ApiClient, ApiError, ApiUnavailableError, Rec
from movierec.ui.online_pages import experiments_page, online_page
from movierec.ui.posters import Posters

API_URL = os.environ.get("MOVIEREC_API_URL", "http://127.0.0.1:8000")
HOME = Path(os.environ.get("MOVIEREC_HOME", ".movierec"))
RESULTS_DIR = Path(os.environ.get("MOVIEREC_RESULTS_DIR", "docs/results"))
PAGES = (
    "Recommendations",
    "Rating prediction",
    "Popular",
    "System status",
    "Evaluation",
    "Experiments",
    "Online",
)
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
CARDS_PER_ROW = 5
CSS = """
<style>
[class*="st-key-card-"] {background: #ffffff; border-radius: 10px; padding: 8px;
  box-shadow: 0 1px 4px rgba(0,0,0,.12);}
[class*="st-key-card-"] img {border-radius: 6px;}
.mr-title {font-weight: 700; font-size: 0.95rem; line-height: 1.2; min-height: 2.4em;}
.mr-meta {color: #666; font-size: 0.78rem;}
.mr-reason {color: #2c5d8a; font-size: 0.78rem;}
</style>
"""


def _basic_credentials() -> tuple[str, str] | None:
    """HTTP Basic admin credentials from the environment, when both are set."""
    user, password = (
        os.environ.get("MOVIEREC_ADMIN_USER"),
        os.environ.get("MOVIEREC_ADMIN_PASSWORD"),
    )
    return (user, password) if user and password else None


def client() -> ApiClient:
    """One API client per session."""
    if "client" not in st.session_state:
        st.session_state.client = ApiClient(
            API_URL,
            api_key=os.environ.get("MOVIEREC_API_KEY"),
            admin_token=os.environ.get("MOVIEREC_ADMIN_TOKEN"),
            admin_basic=_basic_credentials(),
        )
    c: ApiClient = st.session_state.client
    return c


def posters() -> Posters:
    """One poster cache per session (generated offline unless ``TMDB_API_KEY`` is set)."""
    if "posters" not in st.session_state:
        st.session_state.posters = Posters(HOME / "posters", os.environ.get("TMDB_API_KEY"))
    p: Posters = st.session_state.posters
    return p


def state(name: str, default: Any) -> Any:
    """A session value with a default."""
    if name not in st.session_state:
        st.session_state[name] = default
    return st.session_state[name]


# ---------------------------------------------------------------------------- cards
def send_feedback(user_id: int | None, rec: Rec, signal: str) -> None:
    """Record feedback (API for known or registered users; the onboarding list for new)."""
    if user_id is not None:
        client().feedback(user_id, rec.movie_id, signal)
    if signal == "like":
        state("liked", []).append(
            {"movie_id": rec.movie_id, "title": rec.title, "genres": rec.genres}
        )
        if user_id is None:
            picked = state("picked", {})
            picked[rec.movie_id] = rec.title
    elif signal == "save":
        state("saved", {})[rec.movie_id] = rec.title
    state("hidden", set()).add(rec.movie_id)


def cards(recs: list[Rec], user_id: int | None, prefix: str, actions: bool = True) -> None:
    """A grid of movie cards: poster, title, year, genres, score, reasons and actions."""
    img = posters().many(
        [(r.movie_id, r.title, r.year, r.genres) for r in recs],
        tmdb_ids=lambda m: client().movie(m).tmdb_id,
    )
    for start in range(0, len(recs), CARDS_PER_ROW):
        cols = st.columns(CARDS_PER_ROW)
        for col, rec in zip(cols, recs[start : start + CARDS_PER_ROW], strict=False):
            with col, st.container(key=f"{prefix}card-{rec.movie_id}"):
                st.image(img[rec.movie_id], width="stretch")
                year = f" ({rec.year})" if rec.year and f"({rec.year})" not in rec.title else ""
                st.markdown(
                    f"<div class='mr-title'>{rec.title}{year}</div>", unsafe_allow_html=True
                )
                st.markdown(
                    f"<div class='mr-meta'>{' · '.join(rec.genres[:3])}<br>score "
                    f"{rec.score:.3f} · {rec.source}</div>",
                    unsafe_allow_html=True,
                )
                for reason in rec.reasons[:3]:
                    st.markdown(
                        f"<div class='mr-reason'>• {html.escape(reason)}</div>",
                        unsafe_allow_html=True,
                    )
                if not actions:
                    continue
                b1, b2, b3 = st.columns(3)
                if b1.button("👍", key=f"{prefix}like-{rec.movie_id}", help="I like it"):
                    send_feedback(user_id, rec, "like")
                    st.rerun()
                if b2.button("👎", key=f"{prefix}dislike-{rec.movie_id}", help="Not for me"):
                    send_feedback(user_id, rec, "dislike")
                    st.rerun()
                if b3.button("💾", key=f"{prefix}save-{rec.movie_id}", help="Save for later"):
                    send_feedback(user_id, rec, "save")
                    st.rerun()
                if st.button("More like this", key=f"{prefix}more-{rec.movie_id}"):
                    st.session_state.similar_of = (rec.movie_id, rec.title)
                    st.rerun()


def similar_panel(user_id: int | None) -> None:
    """The "more like this" list of the card last asked about."""
    target = st.session_state.get("similar_of")
    if not target:
        return
    movie_id, title = target
    with st.container(key="similar-panel"):
        head, close = st.columns([6, 1])
        head.subheader(f"More like {title}")
        if close.button("Close", key="close-similar"):
            st.session_state.similar_of = None
            st.rerun()
        cards(client().similar(movie_id, k=5), user_id, prefix="sim-", actions=False)
        st.divider()
        st.subheader("Your recommendations")


def taste_panel() -> None:
    """The genres of what the person liked in this session."""
    liked = state("liked", [])
    with st.sidebar.container(key="taste-panel"):
        st.markdown("**Your recent taste**")
        if not liked:
            st.caption("Like a few movies and your genres show up here.")
            return
        counts = Counter(g for m in liked for g in m["genres"])
        for genre, n in counts.most_common(5):
            st.progress(min(1.0, n / max(counts.values())), text=f"{genre} ({n})")
        st.caption("Liked: " + ", ".join(m["title"] for m in liked[-5:]))
        saved = state("saved", {})
        if saved:
            st.caption("Saved for later: " + ", ".join(list(saved.values())[-5:]))


# ---------------------------------------------------------------------------- pages
def strategy_controls(ready: dict[str, Any]) -> tuple[str, float | None, int]:
    """Strategy, mixing weight and k from the sidebar."""
    available = [s for s in ready.get("strategies", []) if s not in ("mf",)]
    options = [s for s in ("ranked", "ease", "als", "itemknn", "sequential") if s in available]
    options += [s for s in available if s not in options] + ["mixed"]
    default = ready.get("default_strategy", options[0])
    strategy = st.sidebar.selectbox(
        "Strategy",
        options,
        index=options.index(default) if default in options else 0,
        key="strategy",
    )
    alpha = None
    if strategy == "mixed":
        alpha = st.sidebar.slider("Personal vs popular (alpha)", 0.0, 1.0, 0.8, 0.05, key="alpha")
    k = int(st.sidebar.slider("How many", 5, 30, 10, 5, key="k"))
    return str(strategy), alpha, k


def recommendations_page() -> None:
    """Known user or new-user onboarding, cards with feedback, more like this."""
    ready = client().ready()
    if not ready.get("ready"):
        st.warning(f"The API is up but has no model yet: {ready.get('reason')}")
        return
    mode = st.sidebar.radio("Who is watching?", ["A known user", "I'm new"], key="mode")
    strategy, alpha, k = strategy_controls(ready)
    taste_panel()
    if mode == "A known user":
        user_id = int(st.sidebar.number_input("User id", min_value=1, value=1, step=1, key="user"))
        st.title(f"Recommended for user {user_id}")
        ans = client().recommend(user_id, k, strategy, alpha=alpha, explain=True)
        if ans.fallback:
            st.info("This user is new to the model: these are popular picks.")
        st.caption(f"model {ans.model_version} · {ans.source}")
        similar_panel(user_id)
        cards(list(ans.items), user_id, prefix="rec-")
        return
    onboarding(strategy, k)


def onboarding(strategy: str, k: int) -> None:
    """A new person searches and picks a few liked movies, then gets recommendations."""
    st.title("Welcome! Pick a few movies you like")
    picked: dict[int, str] = state("picked", {})
    q = st.text_input("Search a movie", key="onboard-q", placeholder="e.g. Toy Story")
    if q.strip():
        found = client().search(q.strip(), limit=8)
        if not found:
            st.caption("No movie matches that title.")
        for m in found:
            c1, c2 = st.columns([5, 1])
            c1.write(f"{m.title} · {', '.join(m.genres[:3])}")
            if c2.button("Add", key=f"add-{m.movie_id}", disabled=m.movie_id in picked):
                picked[m.movie_id] = m.title
                st.rerun()
    if picked:
        st.markdown("**You like:** " + " · ".join(picked.values()))
        if st.button("Start over", key="clear-picked"):
            st.session_state.picked = {}
            st.session_state.liked = []
            st.rerun()
    if len(picked) < 1:
        st.caption("Add at least one movie to get recommendations.")
        return
    ans = client().cold(list(picked), k, strategy)
    st.subheader("Because you like these")
    st.caption(f"model {ans.model_version} · {ans.source}")
    similar_panel(None)
    cards(list(ans.items), None, prefix="cold-")


def prediction_page() -> None:
    """Predicted stars of a movie for a user."""
    st.title("Rating prediction")
    user_id = int(st.number_input("User id", min_value=1, value=1, step=1, key="pred-user"))
    q = st.text_input("Movie title", key="pred-q", placeholder="e.g. Heat")
    if not q.strip():
        return
    found = client().search(q.strip(), limit=10)
    if not found:
        st.caption("No movie matches that title.")
        return
    movie = st.selectbox("Movie", found, format_func=lambda m: m.title, key="pred-movie")
    p = client().predict(user_id, movie.movie_id)
    stars = float(p["rating"])
    st.metric(f"Predicted rating of {movie.title}", f"{stars:.2f} ★")
    st.caption(f"{'★' * round(stars)}{'☆' * (5 - round(stars))} · source {p.get('source')}")


def popular_page() -> None:
    """Popular movies, optionally by genre."""
    st.title("Popular movies")
    genre = st.selectbox("Genre", ["All", *GENRES], key="pop-genre")
    recs = client().popular(k=20, genre=None if genre == "All" else genre)
    cards(recs, None, prefix="pop-", actions=False)


def status_page() -> None:
    """Model version, MLflow run, metrics, last retrain and health."""
    st.title("System status")
    health = client().health()
    ready = client().ready()
    c1, c2, c3 = st.columns(3)
    c1.metric("Service", health.get("status", "?"))
    c2.metric("Ready", "yes" if ready.get("ready") else "no")
    c3.metric("Uptime", f"{health.get('uptime_s', 0):.0f} s")
    if not ready.get("ready"):
        st.warning(ready.get("reason", "no model"))
        return
    st.subheader(f"Model {ready.get('model_version')}")
    try:
        m = client().model()
    except ApiError as e:
        if e.status not in (401, 403):
            raise
        st.info(
            "Strategies: "
            + ", ".join(ready.get("strategies", []))
            + ". The model's details (metrics, MLflow run) are admin-only: start the app with "
            "MOVIEREC_ADMIN_TOKEN set to see them."
        )
        return
    st.write(
        {
            "default strategy": m.get("default_strategy"),
            "strategies": list(m.get("strategies", {})),
            "last retrain": m.get("created"),
            "MLflow run": m.get("mlflow_run_id"),
            "MLflow tracking": m.get("mlflow_tracking_uri"),
            "dataset": m.get("dataset"),
            "data fingerprint": m.get("data_fingerprint", {}).get("sha256", "")[:16],
            "feedback merged": m.get("feedback"),
        }
    )
    metrics = {k: v for k, v in m.get("metrics", {}).items() if isinstance(v, int | float)}
    if metrics:
        st.subheader(f"Offline metrics ({m['metrics'].get('protocol', '')})")
        keys = [k for k in metrics if k.split("@")[0] in ("recall", "ndcg", "map", "coverage")]
        st.dataframe({"metric": keys, "value": [round(metrics[k], 4) for k in keys]})


def evaluation_page() -> None:
    """Charts and tables written by ``movierec evaluate``."""
    st.title("Offline evaluation")
    files = sorted(RESULTS_DIR.glob("*.json"))
    if not files:
        st.info(f"No results in {RESULTS_DIR}: run `movierec evaluate ... --output` there.")
        return
    name = st.selectbox("Result", [f.stem for f in files], key="eval-file")
    result = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    st.caption(result.get("protocol_description", ""))
    png = RESULTS_DIR / f"{name}.png"
    if png.exists():
        st.image(str(png))
    rows = []
    for model, vals in result.get("models", {}).items():
        row = {"model": model}
        row |= {k: round(v, 4) for k, v in vals.items() if k.split("@")[0] in ("recall", "ndcg")}
        row |= {k: round(v, 4) for k, v in vals.items() if k in ("rmse", "mae")}
        rows.append(row)
    st.dataframe(rows)


def experiments() -> None:
    """The Experiments page (:mod:`movierec.ui.online_pages`)."""
    experiments_page(client())


def online() -> None:
    """The Online page (:mod:`movierec.ui.online_pages`)."""
    online_page(client())


PAGE_FUNCS: dict[str, Callable[[], None]] = {
    "Recommendations": recommendations_page,
    "Rating prediction": prediction_page,
    "Popular": popular_page,
    "System status": status_page,
    "Evaluation": evaluation_page,
    "Experiments": experiments,
    "Online": online,
}


def main() -> None:
    """Page chooser plus one error boundary: the API being down is a message, not a trace."""
    st.set_page_config(page_title="movierec", page_icon="🎬", layout="wide")
    st.markdown(CSS, unsafe_allow_html=True)
    st.sidebar.title("🎬 movierec")
    page = st.sidebar.radio("Page", PAGES, key="page")
    try:
        PAGE_FUNCS[page]()
    except ApiUnavailableError as e:
        st.error(
            f"The recommendation service is not reachable right now ({e.message}). "
            "Start it with `movierec serve` or `make demo`, then reload this page."
        )
    except ApiError as e:
        st.error(f"The service could not answer: {e.message}")


main()
