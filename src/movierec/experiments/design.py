"""Experiments as data: variants, weights, a salt; deterministic assignment by hashing.

An experiments file (JSON, ``MOVIEREC_EXPERIMENTS_FILE``) holds one active experiment::

    {"name": "ranker-vs-pop", "salt": "2026-11", "kind": "ab",
     "variants": [{"name": "control", "strategy": "popularity", "weight": 1},
                  {"name": "treatment", "strategy": "ranked", "weight": 1}]}

``kind`` is ``ab`` (each user sees one variant) or ``interleave`` (two variants merged into one
list by team draft). A user's bucket is ``sha256(salt:user_id)`` as a number in [0, 1): the same
on every worker, machine and restart; changing a weight moves only the users whose bucket
crosses a boundary. A variant with weight 0 gets no users (the guardrail's switch).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["ab", "interleave"]


@dataclass(frozen=True)
class Variant:
    """One arm: what it serves (a strategy, and optionally a bundle version) and its weight."""

    name: str
    strategy: str | None = None
    version: str | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class Experiment:
    """An experiment: name, salt, kind and its variants (the first is the control)."""

    name: str
    salt: str
    variants: tuple[Variant, ...]
    kind: Kind = "ab"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Experiment:
        """Validate a parsed experiments document.

        Raises:
            ValueError: Missing fields, fewer than two variants, duplicate names, negative
                weights, no positive weight, or an interleaving of other than two variants.
        """
        try:
            variants = tuple(
                Variant(
                    str(v["name"]),
                    v.get("strategy"),
                    v.get("version"),
                    float(v.get("weight", 1.0)),
                )
                for v in raw["variants"]
            )
            exp = cls(
                str(raw["name"]), str(raw.get("salt", raw["name"])), variants, raw.get("kind", "ab")
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"experiment needs name and variants[name, weight]: {e}") from None
        names = [v.name for v in variants]
        if len(variants) < 2 or len(set(names)) != len(names):
            raise ValueError("an experiment needs two or more variants with distinct names")
        if any(v.weight < 0 for v in variants) or not any(v.weight > 0 for v in variants):
            raise ValueError("weights must be >= 0 and one of them > 0")
        if exp.kind not in ("ab", "interleave"):
            raise ValueError(f"kind must be ab or interleave, not {exp.kind!r}")
        if exp.kind == "interleave" and len(variants) != 2:
            raise ValueError("interleaving merges exactly two variants")
        if any(not v.strategy and not v.version for v in variants):
            raise ValueError("each variant names a strategy or a bundle version")
        return exp

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what the file holds)."""
        return {
            "name": self.name,
            "salt": self.salt,
            "kind": self.kind,
            "variants": [v.__dict__ for v in self.variants],
        }

    def weights(self) -> dict[str, float]:
        """Variant name -> share of users (normalised)."""
        total = sum(v.weight for v in self.variants)
        return {v.name: v.weight / total for v in self.variants}

    def assign(self, user_id: int) -> Variant:
        """The user's variant: stable for a (salt, user) while weights stay."""
        b = bucket(self.salt, user_id)
        edge = 0.0
        shares = self.weights()
        live = [v for v in self.variants if v.weight > 0]
        for v in live:
            edge += shares[v.name]
            if b < edge:
                return v
        return live[-1]

    def with_weight(self, name: str, weight: float) -> Experiment:
        """A copy with one variant's weight changed."""
        vs = tuple(
            Variant(v.name, v.strategy, v.version, weight if v.name == name else v.weight)
            for v in self.variants
        )
        return Experiment(self.name, self.salt, vs, self.kind)


def bucket(salt: str, user_id: int) -> float:
    """``sha256("salt:user")`` as a number in [0, 1)."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def read_experiment(path: Path) -> Experiment | None:
    """The experiment in a file, or ``None`` when the file does not exist.

    Raises:
        ValueError: The file is not a valid experiment (the message says why).
    """
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    return Experiment.from_dict(raw)


def write_experiment(path: Path, exp: Experiment) -> None:
    """Replace the file atomically (readers see the old or the new experiment, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(exp.to_dict(), indent=2))
    tmp.replace(path)
