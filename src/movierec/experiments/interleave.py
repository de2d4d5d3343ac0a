"""Team-draft interleaving (Radlinski, Kurup and Joachims 2008) and its credit rule.

Two rankers' lists are merged: in each round a coin decides which team picks first, then each
team adds its highest-ranked movie not yet in the list. Every shown movie belongs to the team
that drafted it; a watch credits that team. Per impression the team with more credited watches
wins (ties are not counted); the preference test asks whether wins differ from 50/50.
"""

from __future__ import annotations

import hashlib

import numpy as np

TEAMS = "AB"


def team_draft(a: list[int], b: list[int], k: int, seed: str) -> tuple[list[int], str]:
    """Merge two rankings into ``k`` movies; return them and each one's team (``"A"``/``"B"``).

    ``seed`` (e.g. ``salt:user:request``) makes the coin flips reproducible.
    """
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    lists = {"A": a, "B": b}
    pos = {"A": 0, "B": 0}
    count = {"A": 0, "B": 0}
    out: list[int] = []
    teams: list[str] = []
    seen: set[int] = set()

    def next_of(team: str) -> int | None:
        src = lists[team]
        while pos[team] < len(src) and src[pos[team]] in seen:
            pos[team] += 1
        return src[pos[team]] if pos[team] < len(src) else None

    while len(out) < k:
        a_turn = count["A"] < count["B"] or (count["A"] == count["B"] and rng.random() < 0.5)
        team = "A" if a_turn else "B"
        pick = next_of(team)
        if pick is None:  # that team ran out: the other one fills the list
            team = "B" if team == "A" else "A"
            pick = next_of(team)
            if pick is None:
                break
        out.append(pick)
        seen.add(pick)
        teams.append(team)
        count[team] += 1
    return out, "".join(teams)


def credit(items: list[int], teams: str, watched: set[int]) -> tuple[int, int]:
    """Watched movies credited to team A and to team B."""
    a = sum(1 for m, t in zip(items, teams, strict=False) if t == "A" and m in watched)
    b = sum(1 for m, t in zip(items, teams, strict=False) if t == "B" and m in watched)
    return a, b
