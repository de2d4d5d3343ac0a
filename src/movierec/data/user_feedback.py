"""One user's feedback since training: the overlay the engine reads on every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Signal = Literal["like", "dislike", "rating", "watch", "save"]
#: Interaction value of a movie saved for later (intent to watch: a mild positive).
SAVE_VALUE = 4.0


@dataclass
class UserFeedback:
    """What one user told us since the model was trained (movie ids, raw)."""

    liked: dict[int, float] = field(default_factory=dict)
    disliked: set[int] = field(default_factory=set)
    rated: dict[int, float] = field(default_factory=dict)
    watched: dict[int, float] = field(default_factory=dict)
    saved: set[int] = field(default_factory=set)

    def apply(self, movie_id: int, signal: str, value: float | None) -> None:
        """Fold one event in: the latest signal about a movie wins."""
        self.liked.pop(movie_id, None)
        self.disliked.discard(movie_id)
        self.rated.pop(movie_id, None)
        if signal == "like":
            self.liked[movie_id] = 5.0
        elif signal == "dislike":
            self.disliked.add(movie_id)
            self.saved.discard(movie_id)
        elif signal == "rating" and value is not None:
            if value >= 3.5:
                self.liked[movie_id] = value
            elif value <= 2.0:
                self.disliked.add(movie_id)
            self.rated[movie_id] = value
        elif signal == "watch":
            self.watched[movie_id] = self.watched.get(movie_id, 0.0) + (value or 1.0)
        elif signal == "save":
            self.saved.add(movie_id)

    def positives(self) -> dict[int, float]:
        """Movies that count as positive interactions, with their value."""
        out = {m: SAVE_VALUE for m in self.saved if m not in self.disliked}
        out.update({m: v for m, v in self.watched.items() if m not in self.disliked})
        out.update({m: v for m, v in self.rated.items() if m not in self.disliked})
        out.update(self.liked)
        return out

    def copy(self) -> UserFeedback:
        """An independent copy: what a request reads while events keep arriving."""
        return UserFeedback(
            dict(self.liked),
            set(self.disliked),
            dict(self.rated),
            dict(self.watched),
            set(self.saved),
        )

    def state(self) -> tuple[tuple[Any, ...], ...]:
        """The whole state, canonical and hashable: equal states give equal answers."""
        return (
            tuple(sorted(self.liked.items())),
            tuple(sorted(self.disliked)),
            tuple(sorted(self.rated.items())),
            tuple(sorted(self.watched.items())),
            tuple(sorted(self.saved)),
        )

    def touched(self) -> set[int]:
        """Every movie the user gave feedback on (never recommended back)."""
        return set(self.liked) | self.disliked | set(self.rated) | set(self.watched) | self.saved
