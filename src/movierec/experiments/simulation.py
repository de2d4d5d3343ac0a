"""End-to-end simulation of online experiments with users whose future is known.

Each simulated user is a user of the data set whose latest 20% of interactions are held out
as their future; a bundle is trained on the rest (so no model has seen the future). Then, on
127.0.0.1: a Kafka broker (Tansu, unless one is given), the API as its own process serving
that bundle with the experiment file, the stream consumer, and the simulated users asking the
API, watching and rating (:mod:`movierec.streams.producer`). After each run the stored served
lists and watches are analysed like production traffic (:mod:`movierec.experiments.online`).

Runs: an A/B test of two strategies, an A/A test (one strategy in both arms) whose
false-positive rate is estimated by re-randomising its users over many salts, and team-draft
interleaving of the same two strategies.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from movierec.data.feedback import FeedbackStore
from movierec.data.served import ServedLog
from movierec.data.tables import load_tables
from movierec.experiments.design import Experiment, Variant, bucket, write_experiment
from movierec.experiments.online import ab_report, evaluate_online, label_of
from movierec.experiments.stats import mean_diff
from movierec.lifecycle.train import train_and_publish
from movierec.settings import Settings
from movierec.streams.broker import Broker, create_topic, free_port, wait_for_port
from movierec.streams.consumer import StreamConsumer
from movierec.streams.producer import (
    LineProducer,
    Population,
    SimConfig,
    SimStats,
    http_asker,
    simulate,
)

logger = logging.getLogger(__name__)


@dataclass
class SimPlan:
    """What to simulate."""

    dataset: str = "ml-latest-small"
    control: str = "popularity"
    treatment: str = "als"
    requests: int = 1500
    seed: int = 0
    aa_salts: int = 200
    window_s: float = 3600.0


def split_future(ratings: pa.Table, holdout: float = 0.2) -> tuple[pa.Table, Population]:
    """The past (each user's earliest 80%) and the population whose future is the rest."""
    users = ratings["user_id"].to_numpy()
    times = ratings["timestamp"].to_numpy()
    order = np.lexsort((times, users))
    u = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
    sizes = np.diff(np.r_[starts, u.size])
    rank = np.arange(u.size) - np.repeat(starts, sizes)
    n_future = np.round(sizes * holdout).astype(np.int64)
    is_future = rank >= np.repeat(sizes - n_future, sizes)
    mask = np.zeros(u.size, bool)
    mask[order] = is_future
    past = ratings.filter(pa.array(~mask))
    fut = ratings.filter(pa.array(mask))
    pop = Population.from_ratings(
        fut["user_id"].to_numpy(),
        fut["movie_id"].to_numpy(),
        fut["rating"].to_numpy(),
        fut["timestamp"].to_numpy(),
        holdout=1.0,
        min_future=1,
    )
    return past, pop


def _write_release(folder: Path, past: pa.Table, movies: pa.Table | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    out = pa.table(
        {
            "userId": past["user_id"],
            "movieId": past["movie_id"],
            "rating": pc.cast(past["rating"], pa.float64()),
            "timestamp": past["timestamp"],
        }
    )
    pacsv.write_csv(out, folder / "ratings.csv")
    if movies is not None:
        genres = movies["genres"] if "genres" in movies.column_names else None
        if genres is not None and pa.types.is_list(genres.type):
            genres = pc.binary_join(genres, "|")
        m = pa.table(
            {
                "movieId": movies["movie_id"],
                "title": movies["title"],
                "genres": genres if genres is not None else pa.nulls(movies.num_rows, pa.string()),
            }
        )
        pacsv.write_csv(m, folder / "movies.csv")


class Stack:
    """Broker, API process and consumer on 127.0.0.1 over one simulation home."""

    def __init__(self, home: Path, bootstrap: str | None) -> None:
        self.home = home
        self.broker = None if bootstrap else Broker(log_file=home / "tansu.log").start()
        self.bootstrap = bootstrap or self.broker.bootstrap  # type: ignore[union-attr]
        self.topic = f"sim-{int(time.time())}"
        create_topic(self.bootstrap, self.topic, 2)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MOVIEREC_HOME": str(home), "MOVIEREC_WARM_CACHE": "false"}
        env.pop("MOVIEREC_API_KEY", None)  # simulated users call the API without a key
        self.api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "movierec",
                "serve",
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", self.port, 60)
        self.store = FeedbackStore.for_settings(home, None, overlay=False)
        self.stop = threading.Event()
        self.consumer = StreamConsumer(
            self.store, bootstrap=self.bootstrap, topic=self.topic, group="simulation"
        )
        self.thread = threading.Thread(target=self.consumer.run, args=(self.stop,), daemon=True)
        self.thread.start()
        self.producer = LineProducer(self.bootstrap, self.topic)

    def drain(self, lines: int, timeout: float = 120.0) -> None:
        """Wait until the consumer has processed ``lines`` events in all."""
        deadline = time.monotonic() + timeout
        while self.consumer.stats.events < lines and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        """Stop everything."""
        self.stop.set()
        self.thread.join(30)
        self.api.terminate()
        self.api.wait(10)
        self.store.close()
        if self.broker is not None:
            self.broker.stop()


def run_simulation(
    plan: SimPlan, settings: Settings, bootstrap: str | None = None
) -> dict[str, Any]:
    """Train on the past, then run the A/B, A/A and interleaving experiments live."""
    tables = load_tables(plan.dataset, settings)
    past, population = split_future(tables.ratings)
    work = Path(tempfile.mkdtemp(prefix="movierec-sim-"))
    release = work / "past"
    _write_release(release, past, tables.movies)
    home = work / "home"
    sim_settings = Settings(home=home, data_dir=settings.data_dir)
    strategies = tuple(dict.fromkeys(("popularity", plan.control, plan.treatment)))
    train_and_publish(
        sim_settings,
        str(release),
        plan.treatment,
        strategies=strategies,
        evaluate=False,
        use_feedback=False,
    )
    runs = {
        "ab": Experiment(
            "ab",
            f"ab-{plan.seed}",
            (Variant("control", plan.control), Variant("treatment", plan.treatment)),
        ),
        "aa": Experiment(
            "aa", f"aa-{plan.seed}", (Variant("a", plan.control), Variant("b", plan.control))
        ),
        "interleaving": Experiment(
            "tdi",
            f"tdi-{plan.seed}",
            (Variant("A", plan.control), Variant("B", plan.treatment)),
            kind="interleave",
        ),
    }
    stack = Stack(home, bootstrap)
    out: dict[str, Any] = {"plan": plan.__dict__, "users": len(population.users)}
    sent = 0
    try:
        ask = http_asker(stack.url, 10)
        for i, (key, exp) in enumerate(runs.items()):
            write_experiment(home / "experiments.json", exp)
            time.sleep(1.2)  # the service re-reads the file at most once a second
            # each run in its own days of event time: no watch is attributed across runs
            shift = (len(runs) - i) * 2 * 86_400.0
            stats: SimStats = simulate(
                population,
                ask,
                stack.producer.send,
                config=SimConfig(seed=plan.seed * 10 + i),
                max_requests=plan.requests,
                clock=functools.partial(_shifted, shift),
            )
            assert stack.producer.flush() == 0
            sent += stats.lines
            stack.drain(sent)
            out[key] = {"simulated": stats.__dict__}
        served = ServedLog(stack.store.engine).rows()
        watches = stack.store.since(0, signal="watch")
    finally:
        stack.close()
    online = evaluate_online(served, watches, plan.window_s)
    out["online"] = online
    # each run stopped at its planned number of requests: the fixed-horizon test decides
    out["ab"]["report"] = ab_report(online, runs["ab"], final=True)
    out["aa"]["report"] = ab_report(online, runs["aa"], final=True)
    out["aa"]["false_positive_rate"] = aa_false_positive_rate(served, watches, plan)
    out["interleaving"]["report"] = online["interleaving"].get("tdi")
    out["users_to_verdict"] = users_to_verdict(served, watches, runs["ab"], plan.window_s)
    out["verdicts"] = verdicts(out, plan)
    return out


def _shifted(shift: float) -> float:
    return time.time() - shift


def aa_false_positive_rate(
    served: list[dict[str, Any]], watches: list[dict[str, Any]], plan: SimPlan
) -> dict[str, float]:
    """Share of re-randomised A/A splits (new salts) whose users' z-test has p < 0.05."""
    rows = [r for r in served if label_of(str(r["server"])).experiment == "aa"]
    online = evaluate_online(
        [r | {"server": str(r["user_id"])} for r in rows], watches, plan.window_s
    )
    users = sorted(online["variants"])
    rate = np.array([online["variants"][u]["wtr"] for u in users])
    hits = 0
    for s in range(plan.aa_salts):
        arm = np.array([bucket(f"aa-rerandomised-{s}", int(u)) < 0.5 for u in users])
        _, _, _, p = mean_diff(rate[arm].tolist(), rate[~arm].tolist())
        hits += int(p < 0.05)
    return {"salts": plan.aa_salts, "rate": hits / max(plan.aa_salts, 1), "nominal": 0.05}


def users_to_verdict(
    served: list[dict[str, Any]],
    watches: list[dict[str, Any]],
    ab: Experiment,
    window_s: float,
    step: int = 25,
) -> dict[str, int | None]:
    """Distinct users each method needed before its test said "B is better" at p < 0.05.

    The lists of each run are replayed in serving order and tested every ``step`` new users:
    the A/B test with its always-valid p-value, interleaving with the sign test. ``None``:
    never within the run.
    """
    out: dict[str, int | None] = {}
    for key, exp_name in (("ab", ab.name), ("interleaving", "tdi")):
        rows = [r for r in served if label_of(str(r["server"])).experiment == exp_name]
        users: list[int] = []
        seen: set[int] = set()
        for r in rows:
            if int(r["user_id"]) not in seen:
                seen.add(int(r["user_id"]))
                users.append(int(r["user_id"]))
        out[key] = None
        for n in range(step, len(users) + 1, step):
            allowed = set(users[:n])
            part = [r for r in rows if int(r["user_id"]) in allowed]
            online = evaluate_online(part, watches, window_s)
            if key == "ab":
                rep = ab_report(online, ab)
                ok = rep["winner"] == ab.variants[1].name
            else:
                t = online["interleaving"].get("tdi") or {}
                ok = t.get("wins_b", 0) > t.get("wins_a", 0) and t.get("p", 1.0) < 0.05
            if ok:
                out[key] = n
                break
    return out


def verdicts(out: dict[str, Any], plan: SimPlan) -> dict[str, str]:
    """One line per run."""
    ab = out["ab"]["report"]
    aa = out["aa"]["report"]
    tdi = out["interleaving"]["report"] or {}
    b_wins = tdi.get("wins_b", 0) > tdi.get("wins_a", 0)
    preferred = f"B ({plan.treatment})" if b_wins else f"A ({plan.control})"
    return {
        "ab": f"winner: {ab['winner'] or 'none'} (treatment = {plan.treatment})",
        "aa": "no difference"
        if aa["winner"] is None
        and all(r.get("verdict", "") != "worse than control" for r in aa["variants"])
        else "FALSE POSITIVE",
        "interleaving": f"prefers {preferred}, p {tdi.get('p', 1.0):.2g} over "
        f"{tdi.get('impressions', 0)} impressions",
        "users_to_verdict": f"A/B (always-valid p): {out['users_to_verdict']['ab']}, "
        f"interleaving (sign test): {out['users_to_verdict']['interleaving']}",
    }
