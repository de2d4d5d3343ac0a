"""Posters: from TMDB when ``TMDB_API_KEY`` is set, otherwise generated offline; cached on disk.

TMDB posters are fetched by a thread pool (one page of cards at a time); any failure (no key,
no TMDB id, network, 404) falls back quietly to a generated poster: the title, the year and a
gradient in the colours of the movie's genres, so a page always looks complete offline.
"""

from __future__ import annotations

import hashlib
import io
import logging
import textwrap
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

SIZE = (240, 360)
GENRE_COLOURS: dict[str, tuple[int, int, int]] = {
    "Action": (200, 60, 45),
    "Adventure": (230, 130, 40),
    "Animation": (70, 170, 220),
    "Children": (250, 190, 60),
    "Comedy": (245, 200, 40),
    "Crime": (80, 80, 95),
    "Documentary": (90, 140, 110),
    "Drama": (120, 70, 140),
    "Fantasy": (150, 90, 200),
    "Film-Noir": (40, 40, 45),
    "Horror": (120, 20, 30),
    "IMAX": (30, 110, 190),
    "Musical": (230, 100, 160),
    "Mystery": (60, 60, 120),
    "Romance": (225, 90, 120),
    "Sci-Fi": (40, 150, 170),
    "Thriller": (70, 40, 60),
    "War": (110, 110, 70),
    "Western": (170, 110, 60),
}
TMDB_API = "https://api.themoviedb.org/3/movie/{id}"
TMDB_IMAGES = "https://image.tmdb.org/t/p/w342{path}"


def _colour(genre: str) -> tuple[int, int, int]:
    if genre in GENRE_COLOURS:
        return GENRE_COLOURS[genre]
    h = hashlib.sha256(genre.encode()).digest()
    return (60 + h[0] % 160, 60 + h[1] % 160, 60 + h[2] % 160)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "Arial Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def generated_poster(title: str, year: int | None, genres: Iterable[str]) -> bytes:
    """A PNG poster: genre-coloured gradient, wrapped title, year and genres."""
    gs = [g for g in genres if g and g != "(no genres listed)"] or ["Drama"]
    top, bottom = _colour(gs[0]), _colour(gs[1] if len(gs) > 1 else gs[0])
    bottom = tuple(max(0, c - 60) for c in bottom)  # type: ignore[assignment]
    w, h = SIZE
    img = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(img)
    for y in range(h):
        t = y / (h - 1)
        draw.line(
            [(0, y), (w, y)],
            fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    draw.rectangle([10, 10, w - 10, h - 10], outline=(255, 255, 255), width=2)
    name = title.rsplit(" (", 1)[0] if year and title.endswith(f"({year})") else title
    font, small = _font(24), _font(15)
    y = 40
    for line in textwrap.wrap(name, width=14, break_long_words=True)[:6]:
        draw.text((22, y), line, fill=(255, 255, 255), font=font)
        y += 30
    if year:
        draw.text((22, h - 70), str(year), fill=(255, 255, 255), font=_font(20))
    draw.text((22, h - 42), " · ".join(gs[:2])[:26], fill=(235, 235, 235), font=small)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


class Posters:
    """Poster bytes per movie, from a disk cache, TMDB or the generator."""

    def __init__(
        self,
        cache_dir: Path,
        tmdb_key: str | None = None,
        http: httpx.Client | None = None,
        workers: int = 8,
    ) -> None:
        self.cache_dir = cache_dir
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.tmdb_key = tmdb_key
        self.http = http or httpx.Client(timeout=4.0, follow_redirects=True)
        self.workers = workers

    def _path(self, movie_id: int, kind: str) -> Path:
        return self.cache_dir / f"{movie_id}.{kind}.png"

    def _tmdb(self, tmdb_id: int) -> bytes | None:
        r = self.http.get(TMDB_API.format(id=tmdb_id), params={"api_key": self.tmdb_key})
        r.raise_for_status()
        path = r.json().get("poster_path")
        if not path:
            return None
        img = self.http.get(TMDB_IMAGES.format(path=path))
        img.raise_for_status()
        return img.content

    def get(
        self,
        movie_id: int,
        title: str,
        year: int | None,
        genres: Iterable[str],
        tmdb_id: int | None = None,
    ) -> bytes:
        """A poster for one movie (never raises)."""
        if self.tmdb_key and tmdb_id:
            cached = self._path(movie_id, "tmdb")
            if cached.exists():
                return cached.read_bytes()
            try:
                data = self._tmdb(tmdb_id)
                if data:
                    cached.write_bytes(data)
                    return data
            except (httpx.HTTPError, ValueError) as e:
                logger.info("TMDB poster of movie %s unavailable: %s", movie_id, e)
        cached = self._path(movie_id, "gen")
        if cached.exists():
            return cached.read_bytes()
        data = generated_poster(title, year, genres)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)
        return data

    def many(
        self,
        movies: list[tuple[int, str, int | None, tuple[str, ...]]],
        tmdb_ids: Callable[[int], int | None] | None = None,
    ) -> dict[int, bytes]:
        """Posters of a page of movies, fetched in parallel."""

        def one(m: tuple[int, str, int | None, tuple[str, ...]]) -> tuple[int, bytes]:
            tid = None
            if self.tmdb_key and tmdb_ids is not None:
                try:
                    tid = tmdb_ids(m[0])
                except Exception:  # the id lookup is best-effort too
                    tid = None
            return m[0], self.get(m[0], m[1], m[2], m[3], tid)

        with ThreadPoolExecutor(self.workers) as pool:
            return dict(pool.map(one, movies))
