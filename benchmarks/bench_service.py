"""/recommend/user latency and throughput vs a bare FastAPI endpoint, in the same run.

Both servers run under uvicorn with the same worker count on 127.0.0.1; an async httpx client
with a fixed concurrency sends requests for a fixed time (cycling through known user ids).

    python benchmarks/bench_service.py --catalog small   # ml-latest-small (9.7k items), EASE
    python benchmarks/bench_service.py --catalog 60k     # synthetic 60k-item catalog, ALS
    python benchmarks/bench_service.py --catalog small --strategy ranked   # the learned ranker

Cached answers (a known user's top-N is computed once per bundle) are what the load test
measures; the per-request compute path is measured separately: sequential cold-start
requests (``/recommend_cold``, never cached) for the strategy and for EASE in the same run,
and the per-request rows (fold-in, explain, cold start) under wrk at the same concurrency,
alternating ``--repeats`` rounds (medians), each with the server's CPU milliseconds a request
and a single request's latency (wrk with one connection: a C client, so the latency is the
server's; the bare endpoint's is measured the same way beside the cached runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

#: Seconds from process start to /ready answering 200, per server started.
STARTUP: list[dict[str, Any]] = []


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(target: str, env: dict[str, str], workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if target.endswith("create_app"):
        cmd.insert(4, "--factory")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    ready_s: float | None = None
    while time.time() < deadline:
        try:
            r = httpx.get(f"{url}/ready", timeout=2)
            if r.status_code == 200 and ready_s is None:
                ready_s = time.perf_counter() - t0
                STARTUP.append({"target": target, "ready_s": ready_s})
            # measure after the background warm and the rankers' compilation: they compete
            # for the CPU while they run (and LightGBM answers until the trees are compiled)
            body = r.json() if r.status_code == 200 else {}
            if body and not body.get("warming", False) and not body.get("compiling", False):
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise TimeoutError(f"{target} did not start")


async def _load(
    url: str, users: list[int], seconds: float, concurrency: int, k: int, query: str = ""
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal errors
        i = offset
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            while time.perf_counter() < stop:
                u = users[i % len(users)]
                i += concurrency
                t0 = time.perf_counter()
                r = await c.get(f"/recommend/user/{u}?k={k}{query}")
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(j) for j in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(
    url: str, users: list[int], seconds: float, concurrency: int, k: int, query: str = ""
) -> dict[str, Any]:
    """Drive the server with wrk (C, one thread) cycling through the user ids."""
    paths = [f"/recommend/user/{u}?k={k}{query}" for u in users]
    return _wrk_paths(url, paths, seconds, concurrency)


def _wrk_paths(url: str, paths: list[str], seconds: float, concurrency: int) -> dict[str, Any]:
    """Drive the server with wrk (C, one thread) cycling through the given GET paths."""
    import re
    import tempfile

    quoted = ",".join(json.dumps(p) for p in paths)
    script = (
        f"local paths = {{{quoted}}}\nlocal n = 0\n"
        "request = function()\n  n = n + 1\n"
        '  return wrk.format("GET", paths[(n % #paths) + 1])\n'
        "end\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    proc = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, int(seconds))}s",
            "--latency",
            "-s",
            f.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(f.name).unlink()
    text = proc.stdout

    def pct(p: str) -> float:
        m = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {
        "client": "wrk",
        "requests": int(total.group(1)) if total else 0,
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else None,
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
    }


def _uncached(home: Path) -> dict[str, str]:
    """A service's environment that scores every per-request answer afresh.

    By default the answer of a feedback state (a user's likes since training, a cold start's
    liked movies) is kept until the next event; the per-request rows measure the scoring
    itself, so they turn that off.
    """
    return {"MOVIEREC_HOME": str(home), "MOVIEREC_CACHE_FEEDBACK_ANSWERS": "false"}


def _cold_latency(url: str, movies: list[int], strategy: str, n: int, k: int) -> dict[str, Any]:
    """Sequential /recommend_cold requests (fold-in of 20 random liked movies, uncached)."""
    rng = np.random.default_rng(0)
    lat = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(n):
            liked = ",".join(str(m) for m in rng.choice(movies, 20, replace=False))
            t0 = time.perf_counter()
            r = c.get(f"/recommend_cold?liked={liked}&k={k}&strategy={strategy}")
            lat.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
    return {
        "strategy": strategy,
        "requests": n,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def _sequential(
    url: str, paths: list[str], rounds: int = 3, warm_up: bool = True
) -> dict[str, Any]:
    """One request at a time over ``paths`` (``rounds`` times; the first a warm-up if asked)."""
    lat = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for r in range(rounds):
            for path in paths:
                t0 = time.perf_counter()
                c.get(path).raise_for_status()
                if r or not warm_up:
                    lat.append((time.perf_counter() - t0) * 1000)
    return {
        "requests": len(lat),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed_wrk(pid: int, url: str, paths: list[str], seconds: float, conns: int) -> dict[str, Any]:
    """:func:`_wrk_paths`, plus the server's CPU milliseconds a request during the run."""
    cpu0 = _cpu_s(pid)
    r = _wrk_paths(url, paths, seconds, conns)
    r["server_cpu_ms_per_request"] = (_cpu_s(pid) - cpu0) * 1000 / max(1, r["requests"])
    return r


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the runs' numbers, with the runs themselves."""
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float) and k != "errors"]
    out: dict[str, Any] = {k: float(np.median([r[k] for r in runs])) for k in keys}
    out["errors"] = int(sum(r.get("errors", 0) for r in runs))
    out["runs"] = runs
    return out


def _rss_mb(pid: int) -> float:
    """Resident set size of a process (MB), summed over its children (uvicorn workers)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _per_request_rows(
    home: Path, users: list[int], strategy: str, a: Any, bare_rps: float
) -> dict[str, Any]:
    """The paths that cannot be served from the cache, each under wrk like the cached one.

    fold-in: users with a fresh like (``POST /feedback`` first); explain: ``explain=true``;
    cold: ``/recommend_cold`` with 20 liked movies; batch: sequential ``POST
    /recommend/batch`` of 1,000 users. Plus the server's RSS after all of it. Each scored
    afresh (``MOVIEREC_CACHE_FEEDBACK_ANSWERS=false``); fold_in_repeated: the fold-in
    requests again with the default, each feedback state's answer kept until its next event.
    The loaded rows alternate for ``a.repeats`` rounds (medians); ``single`` is wrk with one
    connection over the first 100 paths of each row, except the first explanation of users
    (each asked once: sequential httpx requests, against the same users' plain answers).
    """
    import tempfile

    if a.client != "wrk":
        print("  per-request rows need wrk (apt-get install wrk): skipped")
        return {}
    # a copy of the home: the likes posted below must not turn the cached runs of a later
    # benchmark into per-request ones
    scratch = Path(tempfile.mkdtemp()) / "home"
    shutil.copytree(home / "bundles", scratch / "bundles", symlinks=True)
    if (home / "cache").exists():  # compiled rankers, as a restarted service finds them
        shutil.copytree(home / "cache", scratch / "cache", symlinks=True)
    home = scratch
    proc, url = _start("movierec.service.app:create_app", _uncached(home), 1)
    out: dict[str, Any] = {}
    try:
        from movierec.lifecycle.bundle import load_bundle as _lb

        movies = [int(m) for m in _lb(home / "bundles").items.ids[:2000]]
        rss_ready = _rss_mb(proc.pid)
        rng = np.random.default_rng(1)
        fresh = users[-200:]
        with httpx.Client(base_url=url, timeout=30) as c:
            for u in fresh:
                c.post(
                    "/feedback",
                    json={"user_id": u, "movie_id": movies[u % len(movies)], "signal": "like"},
                ).raise_for_status()
        q = f"k={a.k}&strategy={strategy}"
        rows = {
            "fold_in": [f"/recommend/user/{u}?{q}" for u in fresh],
            "explain": [f"/recommend/user/{u}?{q}&explain=true" for u in users[:200]],
            "explain_off_same_users": [f"/recommend/user/{u}?{q}" for u in users[:200]],
            "cold": [
                "/recommend_cold?liked="
                + ",".join(str(m) for m in rng.choice(movies, 20, replace=False))
                + f"&{q}"
                for _ in range(200)
            ],
        }
        for paths in rows.values():
            _wrk_paths(url, paths[:20], 2, a.concurrency)  # warm-up
        # the rows alternate, ``repeats`` rounds (medians): machine noise hits each of them
        loaded: dict[str, list[dict[str, Any]]] = {name: [] for name in rows}
        alone: dict[str, list[dict[str, Any]]] = {name: [] for name in rows}
        for _ in range(a.repeats):
            for name, paths in rows.items():
                loaded[name].append(_timed_wrk(proc.pid, url, paths, a.seconds, a.concurrency))
                # one connection (wrk, C): a single request's own latency, no queueing
                alone[name].append(_timed_wrk(proc.pid, url, paths[:100], 3, 1))
        for name in rows:
            out[name] = _median_of(loaded[name])
            out[name]["ratio_to_bare"] = out[name]["rps"] / bare_rps
        # single requests, one at a time: what explain adds to the same request, and the
        # per-request paths' own latency (no queueing behind other connections)
        single: dict[str, Any] = {name: _median_of(alone[name]) for name in rows}
        single["explain_added_ms"] = {
            "p50_ms": single["explain"]["p50_ms"] - single["explain_off_same_users"]["p50_ms"]
        }
        # explained answers are kept like plain ones: what the first one of a user costs
        # (users not asked for before, plain answers cached first, each explained once)
        taken = set(fresh)
        others = [u for u in users[200:] if u not in taken][:200]
        single["explain_off_other_users"] = _sequential(
            url, [f"/recommend/user/{u}?{q}" for u in others], rounds=2
        )
        single["explain_first"] = _sequential(
            url, [f"/recommend/user/{u}?{q}&explain=true" for u in others], 1, warm_up=False
        )
        single["explain_first_added_ms"] = {
            "p50_ms": single["explain_first"]["p50_ms"]
            - single["explain_off_other_users"]["p50_ms"]
        }
        out["single"] = single
        lat = []
        with httpx.Client(base_url=url, timeout=120) as c:
            for i in range(12):
                ids = [int(x) for x in rng.choice(users, min(1000, len(users)), replace=False)]
                t0 = time.perf_counter()
                c.post(
                    "/recommend/batch", json={"user_ids": ids, "k": a.k, "strategy": strategy}
                ).raise_for_status()
                if i >= 2:
                    lat.append((time.perf_counter() - t0) * 1000)
        out["batch_1000"] = {
            "requests": len(lat),
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "users_per_s": 1000 * 1000 / float(np.median(lat)),
        }
        out["rss_mb"] = {"ready": rss_ready, "after_all": _rss_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(20)
    # the same fold-in users with the answers of a feedback state kept (the default): the
    # first request of each state scores it, every later one with no new event is a lookup
    proc, url = _start("movierec.service.app:create_app", {"MOVIEREC_HOME": str(home)}, 1)
    try:
        _wrk_paths(url, rows["fold_in"], 2, a.concurrency)  # warm-up: each state once
        r = _wrk_paths(url, rows["fold_in"], a.seconds, a.concurrency)
        r["ratio_to_bare"] = r["rps"] / bare_rps
        out["fold_in_repeated"] = r
        out["single"]["fold_in_repeated"] = _wrk_paths(url, rows["fold_in"][:100], 3, 1)
    finally:
        proc.terminate()
        proc.wait(20)
    for name, r in out.items():
        if "rps" in r:
            print(
                f"  {name}: {r['rps']:.0f} req/s p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms"
            )
    for name, r in out.get("single", {}).items():
        print(f"  single {name}: p50 {r['p50_ms']:.2f} ms")
    return out


def _prepare(
    catalog: str, home: Path, strategy: str | None, params: dict[str, Any] | None = None
) -> tuple[list[int], str]:
    from movierec.lifecycle.bundle import current_version, load_bundle
    from movierec.lifecycle.train import train_and_publish
    from movierec.settings import Settings

    settings = Settings(home=home)
    if current_version(settings.bundles_dir) is None:
        if catalog == "small":
            data_dir = Path(os.environ.get("MOVIEREC_DATA_DIR", "../shared/data/movielens"))
            train_and_publish(
                settings,
                "ml-latest-small",
                "ease",
                strategies=("popularity", "ease", "ranked"),
                params=params,
                data_dir=data_dir,
                evaluate=False,
            )
        else:
            from movierec.data.synthetic import SynthConfig, generate

            folder = home / "synth-60k"
            if not (folder / "ratings.csv").exists():
                generate(folder, SynthConfig(ratings=3_000_000, movies=60_000, users=20_000))
            train_and_publish(
                settings,
                str(folder),
                "als",
                strategies=("popularity", "als", "ease")
                if strategy == "ease"
                else ("popularity", "als"),
                params={"als": {"iterations": 5}},
                evaluate=False,
            )
    bundle = load_bundle(settings.bundles_dir)
    chosen = strategy or bundle.default_strategy
    if chosen not in bundle.models:
        raise SystemExit(
            f"strategy {chosen} is not in the bundle under {home}; delete it to retrain"
        )
    return [int(u) for u in bundle.users.ids], chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--catalog", choices=["small", "60k"], default="small")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="Alternating rounds (medians).")
    parser.add_argument("--strategy", default=None, help="Strategy to request (default: bundle's)")
    parser.add_argument("--cold-requests", type=int, default=200)
    parser.add_argument(
        "--client",
        choices=["wrk", "httpx"],
        default="wrk" if shutil.which("wrk") else "httpx",
        help="Load generator (wrk: apt-get install wrk; httpx: pure Python, takes more CPU)",
    )
    parser.add_argument(
        "--params",
        default=None,
        help="Config overrides as JSON for the small catalog's bundle, as `movierec train "
        "--params` (a bundle of its own: give --home too)",
    )
    parser.add_argument(
        "--home", type=Path, default=None, help="Bench home (default .movierec/bench/service-*)"
    )
    a = parser.parse_args()
    home = a.home or Path(".movierec/bench") / f"service-{a.catalog}"
    params = json.loads(a.params) if a.params else None
    users, strategy = _prepare(a.catalog, home, a.strategy, params)
    for stale in home.glob("feedback.db*"):  # feedback makes users per-request: not cached
        stale.unlink()
    query = "" if a.strategy is None else f"&strategy={strategy}"
    runs: dict[str, list[dict[str, Any]]] = {"bare_fastapi": [], "movierec": []}
    sides = (
        ("bare_fastapi", "bare_app:app", {"PYTHONPATH": str(Path(__file__).parent)}),
        ("movierec", "movierec.service.app:create_app", {"MOVIEREC_HOME": str(home)}),
    )
    for _ in range(a.repeats):  # alternate the servers so that machine noise hits both
        for name, target, env in sides:
            proc, url = _start(target, env, a.workers)
            try:
                q = query if name == "movierec" else ""
                asyncio.run(_load(url, users, 2.0, a.concurrency, a.k, q))  # warm-up
                if a.client == "wrk":
                    runs[name].append(_wrk(url, users, a.seconds, a.concurrency, a.k, q))
                    alone = _wrk(url, users, 3, 1, a.k, q)  # one connection: a lone request
                    runs[name][-1]["single_p50_ms"] = alone["p50_ms"]
                    runs[name][-1]["single_p99_ms"] = alone["p99_ms"]
                else:
                    runs[name].append(
                        asyncio.run(_load(url, users, a.seconds, a.concurrency, a.k, q))
                    )
            finally:
                proc.terminate()
                proc.wait(20)
    results: dict[str, dict[str, Any]] = {
        name: {
            "rps": float(np.median([r["rps"] for r in rs])),
            "p50_ms": float(np.median([r["p50_ms"] for r in rs])),
            "p99_ms": float(np.median([r["p99_ms"] for r in rs])),
            "single_p50_ms": float(np.median([r.get("single_p50_ms", np.nan) for r in rs])),
            "errors": int(sum(r["errors"] for r in rs)),
            "runs": rs,
        }
        for name, rs in runs.items()
    }
    ours, bare = results["movierec"], results["bare_fastapi"]
    cold: dict[str, Any] = {}
    proc, url = _start("movierec.service.app:create_app", _uncached(home), 1)
    try:
        from movierec.lifecycle.bundle import load_bundle as _lb

        movies = [int(m) for m in _lb(home / "bundles").items.ids[:2000]]
        names = dict.fromkeys([strategy, "ease" if a.catalog == "small" else strategy])
        for s in names:
            _cold_latency(url, movies, s, 10, a.k)  # warm-up
            cold[s] = _cold_latency(url, movies, s, a.cold_requests, a.k)
    finally:
        proc.terminate()
        proc.wait(20)
    paths = _per_request_rows(home, users, strategy, a, bare["rps"])
    target_p99 = 10.0 if a.catalog == "small" else 20.0
    out = {
        "benchmark": "service_recommend_user",
        "catalog": a.catalog,
        "strategy": strategy,
        "params": params,
        "items": None,
        "users": len(users),
        "k": a.k,
        "workers": a.workers,
        "concurrency": a.concurrency,
        "seconds": a.seconds,
        "client": a.client,
        "repeats": a.repeats,
        **results,
        "throughput_ratio": ours["rps"] / bare["rps"],
        "targets": {"throughput_ratio_min": 0.7, "p99_ms_max": target_p99},
        "meets_targets": ours["rps"] / bare["rps"] >= 0.7 and ours["p99_ms"] <= target_p99,
        "cold_start_sequential": cold,
        "per_request": paths,
        "startup": STARTUP,
    }
    from movierec.lifecycle.bundle import load_bundle

    out["items"] = len(load_bundle(home / "bundles").items)
    suffix = "" if a.strategy is None else f"-{strategy}"
    path = a.out or Path("benchmarks/results") / f"service-{a.catalog}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(
        f"/recommend/user ({a.catalog}: {out['items']:,} items, {strategy}, k={a.k}, "
        f"{a.workers} worker(s), {a.concurrency} concurrent, {a.client}, median of {a.repeats}): "
        f"movierec {ours['rps']:.0f} req/s "
        f"p50 {ours['p50_ms']:.2f} ms p99 {ours['p99_ms']:.2f} ms; bare FastAPI {bare['rps']:.0f} "
        f"req/s p50 {bare['p50_ms']:.2f} ms p99 {bare['p99_ms']:.2f} ms; throughput ratio "
        f"{out['throughput_ratio']:.2f} (target >= 0.7), p99 target <= {target_p99} ms; "
        f"wrote {path}"
    )
    for s, c in cold.items():
        print(
            f"  cold start {s} (sequential, uncached): "
            f"p50 {c['p50_ms']:.2f} ms p99 {c['p99_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
