"""Typed HTTP client of the movierec API (the UI's only way to reach the service).

Every call returns plain typed records; an unreachable or slow API raises
:class:`ApiUnavailableError`, and a 4xx/5xx answer :class:`ApiError` with the API's message, so a
page can always show a clear sentence instead of a stack trace.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import httpx


class ApiError(Exception):
    """The API answered with an error status (the message is the API's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ApiUnavailableError(ApiError):
    """The API could not be reached in time."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, f"the API at {url} is not reachable ({reason})")


@dataclass(frozen=True)
class Movie:
    """A catalog movie."""

    movie_id: int
    title: str
    year: int | None = None
    genres: tuple[str, ...] = ()
    interactions: int = 0
    tmdb_id: int | None = None


@dataclass(frozen=True)
class Rec:
    """A recommended movie with its score, source and reasons."""

    movie_id: int
    title: str
    year: int | None
    genres: tuple[str, ...]
    score: float
    source: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecList:
    """One recommendation answer."""

    items: tuple[Rec, ...]
    source: str
    fallback: bool
    model_version: str
    unknown_movies: tuple[int, ...] = field(default_factory=tuple)


def _rec(d: dict[str, Any]) -> Rec:
    return Rec(
        movie_id=int(d["movie_id"]),
        title=str(d["title"]),
        year=d.get("year"),
        genres=tuple(d.get("genres") or ()),
        score=float(d.get("score", 0.0)),
        source=str(d.get("source", "")),
        reasons=tuple(d.get("reasons") or ()),
    )


def _movie(d: dict[str, Any]) -> Movie:
    return Movie(
        movie_id=int(d["movie_id"]),
        title=str(d["title"]),
        year=d.get("year"),
        genres=tuple(d.get("genres") or ()),
        interactions=int(d.get("interactions") or 0),
        tmdb_id=d.get("tmdb_id"),
    )


def _reclist(d: dict[str, Any]) -> RecList:
    return RecList(
        items=tuple(_rec(i) for i in d["items"]),
        source=str(d["source"]),
        fallback=bool(d["fallback"]),
        model_version=str(d.get("model_version", "")),
        unknown_movies=tuple(d.get("unknown_movies") or ()),
    )


class ApiClient:
    """Blocking client with one connection pool and a short timeout."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 5.0,
        *,
        api_key: str | None = None,
        admin_token: str | None = None,
        admin_basic: tuple[str, str] | None = None,
    ) -> None:
        """A client of the API at ``base_url``.

        ``api_key`` is sent with writes; the admin token (else HTTP Basic ``admin_basic``)
        with admin pages.
        """
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._write_headers = {"X-API-Key": api_key} if api_key else {}
        self._admin_headers: dict[str, str] = {}
        if admin_token:
            self._admin_headers = {"Authorization": f"Bearer {admin_token}"}
        elif admin_basic:
            raw = base64.b64encode(f"{admin_basic[0]}:{admin_basic[1]}".encode()).decode()
            self._admin_headers = {"Authorization": f"Basic {raw}"}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiUnavailableError(self.base_url, "it did not answer in time") from None
        except httpx.HTTPError as e:
            raise ApiUnavailableError(self.base_url, type(e).__name__) from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            if isinstance(detail, list):  # FastAPI validation errors
                detail = "; ".join(str(x.get("msg", x)) for x in detail)
            raise ApiError(r.status_code, str(detail))
        return r.json()

    # ------------------------------------------------------------ system
    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return dict(self._call("GET", "/health"))

    def ready(self) -> dict[str, Any]:
        """``GET /ready`` (a 503 body is returned, not raised: it says why)."""
        try:
            return dict(self._call("GET", "/ready"))
        except ApiError as e:
            if e.status == 503:
                return {"ready": False, "reason": e.message}
            raise

    def model(self) -> dict[str, Any]:
        """``GET /model``: the served bundle's manifest (needs the admin token)."""
        return dict(self._call("GET", "/model", headers=self._admin_headers))

    def online(self, window: str = "1h") -> dict[str, Any]:
        """``GET /online``: WTR per model version or variant, beside offline metrics."""
        return dict(self._call("GET", "/online", params={"window": window}))

    def experiments(self, window: str = "1h") -> dict[str, Any]:
        """``GET /experiments``: the experiment in force and its report."""
        return dict(self._call("GET", "/experiments", params={"window": window}))

    # --------------------------------------------------- recommendations
    def recommend(
        self,
        user_id: int,
        k: int = 10,
        strategy: str | None = None,
        *,
        alpha: float | None = None,
        explain: bool = True,
    ) -> RecList:
        """Top-k for a user (``mixed`` blends with popularity by ``alpha``)."""
        params: dict[str, Any] = {"k": k, "explain": str(explain).lower()}
        if strategy == "mixed":
            if alpha is not None:
                params["alpha"] = alpha
            return _reclist(self._call("GET", f"/recommend/mixed/{user_id}", params=params))
        if strategy:
            params["strategy"] = strategy
        return _reclist(self._call("GET", f"/recommend/user/{user_id}", params=params))

    def cold(self, liked: list[int], k: int = 10, strategy: str | None = None) -> RecList:
        """Recommendations for a new user from movies they like."""
        params: dict[str, Any] = {"liked": ",".join(map(str, liked)), "k": k, "explain": "true"}
        if strategy and strategy != "mixed":
            params["strategy"] = strategy
        return _reclist(self._call("GET", "/recommend_cold", params=params))

    def similar(self, movie_id: int, k: int = 5) -> list[Rec]:
        """Movies like one movie."""
        d = self._call("GET", f"/similar/movie/{movie_id}", params={"k": k})
        items = d["items"] if isinstance(d, dict) else d
        return [_rec(i) for i in items]

    def popular(self, k: int = 20, genre: str | None = None) -> list[Rec]:
        """Most popular movies, optionally of one genre."""
        params: dict[str, Any] = {"k": k}
        if genre:
            params["genre"] = genre
        d = self._call("GET", "/popular", params=params)
        return [_rec(i) for i in (d["items"] if isinstance(d, dict) else d)]

    def search(self, q: str, limit: int = 10) -> list[Movie]:
        """Movies whose title contains ``q``."""
        d = self._call("GET", "/movies/search", params={"q": q, "limit": limit})
        return [_movie(m) for m in (d["items"] if isinstance(d, dict) else d)]

    def movie(self, movie_id: int) -> Movie:
        """One catalog movie."""
        return _movie(self._call("GET", f"/movies/{movie_id}"))

    def predict(self, user_id: int, movie_id: int) -> dict[str, Any]:
        """Predicted rating of a movie for a user."""
        return dict(
            self._call("GET", "/predict", params={"user_id": user_id, "movie_id": movie_id})
        )

    def feedback(
        self, user_id: int, movie_id: int, signal: str, value: float | None = None
    ) -> dict[str, Any]:
        """Send a like / dislike / save / rating (acknowledged once stored)."""
        body: dict[str, Any] = {
            "user_id": user_id,
            "movie_id": movie_id,
            "signal": signal,
            "source": "ui",
        }
        if value is not None:
            body["value"] = value
        return dict(self._call("POST", "/feedback", json=body, headers=self._write_headers))
