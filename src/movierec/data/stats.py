"""Dataset statistics and their plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from movierec.data.tables import Tables

#: The statistics a summary table shows, in order.
STAT_ROWS = (
    "ratings",
    "users",
    "movies",
    "rated_movies",
    "tags",
    "density",
    "rating_mean",
    "top10pct_movies_share",
)


def describe(tables: Tables, dataset: str) -> dict[str, Any]:
    """:func:`dataset_stats` of loaded tables, with the dataset's name, path and layout."""
    return {
        "dataset": dataset,
        "path": tables.origin,
        "layout": tables.layout,
        **dataset_stats(tables.ratings, tables.movies, tables.tags),
    }


def dataset_stats(
    ratings: pa.Table, movies: pa.Table | None, tags: pa.Table | None
) -> dict[str, Any]:
    """Counts, density, rating histogram and popularity concentration of a release.

    ``movies`` counts the catalog (movies.csv) when given, else the distinct rated movies.
    """
    users = np.unique(ratings["user_id"].to_numpy())
    rated = np.unique(ratings["movie_id"].to_numpy(), return_counts=True)
    n_movies = movies.num_rows if movies is not None else int(rated[0].shape[0])
    n = ratings.num_rows
    values, counts = np.unique(ratings["rating"].to_numpy(), return_counts=True)
    pop = np.sort(rated[1])[::-1]
    top = max(1, int(np.ceil(0.1 * pop.shape[0])))
    ts = ratings["timestamp"].to_numpy()
    per_user = np.bincount(np.searchsorted(users, ratings["user_id"].to_numpy()))
    return {
        "ratings": n,
        "users": int(users.shape[0]),
        "movies": n_movies,
        "rated_movies": int(rated[0].shape[0]),
        "tags": tags.num_rows if tags is not None else 0,
        "density": n / (users.shape[0] * rated[0].shape[0]) if n else 0.0,
        "rating_mean": float(ratings["rating"].to_numpy().mean()) if n else None,
        "rating_histogram": {
            f"{float(v):.1f}": int(c) for v, c in zip(values, counts, strict=True)
        },
        "ratings_per_user": {
            "min": int(per_user.min()),
            "median": float(np.median(per_user)),
            "max": int(per_user.max()),
        }
        if n
        else {},
        "top10pct_movies_share": float(pop[:top].sum() / n) if n else 0.0,
        "first_timestamp": int(ts.min()) if n else None,
        "last_timestamp": int(ts.max()) if n else None,
    }


def plot_stats(ratings: pa.Table, stats: dict[str, Any], path: Path, title: str) -> None:
    """Plot the rating histogram and the popularity long tail into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    hist = stats["rating_histogram"]
    ax1.bar(list(hist.keys()), list(hist.values()), color="#3b6fb6")
    ax1.set_title("Rating histogram")
    ax1.set_xlabel("rating")
    ax1.set_ylabel("ratings")
    _, counts = np.unique(ratings["movie_id"].to_numpy(), return_counts=True)
    pop = np.sort(counts)[::-1]
    ax2.plot(np.arange(1, pop.shape[0] + 1), pop, color="#c2410c")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_title(f"Popularity long tail (top 10% of movies: {stats['top10pct_movies_share']:.0%})")
    ax2.set_xlabel("movie rank")
    ax2.set_ylabel("ratings")
    fig.suptitle(
        f"{title}: {stats['ratings']:,} ratings, {stats['users']:,} users, "
        f"{stats['movies']:,} movies, density {stats['density']:.4f}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
