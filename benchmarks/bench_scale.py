"""How far one machine goes: every step of the product at a given scale, each next to a baseline.

Each step runs as its own process under ``/usr/bin/time`` (wall seconds, peak RSS of the
process and its children), in this order, on a MovieLens-shaped synthetic release:

    data synth        -> baseline: none (set-up)
    data ingest       -> baseline: pyarrow reading the same ratings.csv (no validation, no store)
    fit, per strategy -> `movierec evaluate --models X` (leave-last-out: fit + evaluation);
                         ALS on Spark next to ALS on implicit (the baseline)
    train + publish   -> `movierec train --no-evaluate` of the served strategies
    service start-up  -> time to /ready and RSS; baseline: a bare FastAPI app
    /recommend        -> sequential requests for known users, p50/p99; baseline: bare endpoint

    python benchmarks/bench_scale.py --ratings 20000000 --users 138000 --movies 27000  # ml-20m
    python benchmarks/bench_scale.py --ratings 20000000                               # ml-32m
    python benchmarks/bench_scale.py --ratings 1000000 --strategies popularity,als,ease

A strategy that cannot fit says so before it starts (``InsufficientMemoryError``): the
table shows ``refused`` with its message rather than a crash. JSON goes to
``benchmarks/results/scale-<ratings>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from movierec.streams.broker import free_port

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def _timed(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``cmd`` under /usr/bin/time; wall seconds, peak RSS (MB), exit status, output tail."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        t0 = time.perf_counter()
        try:
            res = subprocess.run(
                [time_bin, "-f", "%e %M", "-o", t.name, *cmd],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            rc, out = res.returncode, (res.stdout + res.stderr)[-2000:]
        except subprocess.TimeoutExpired:
            rc, out = 124, f"timed out after {timeout:.0f} s"
        wall = time.perf_counter() - t0
        fields = t.read().split()
    peak = float(fields[-1]) / 1024 if len(fields) >= 2 else float("nan")
    return {"seconds": round(wall, 2), "peak_rss_mb": round(peak, 1), "rc": rc, "tail": out}


def _rss_mb(pid: int) -> float:
    """RSS of a process and its children (MB)."""
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True
    ).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    kids: dict[int, list[int]] = {}
    rss = {}
    for p, pp, r in rows:
        kids.setdefault(pp, []).append(p)
        rss[p] = r
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += kids.get(p, [])
    return total / 1024


def _serve(cmd: list[str], env: dict[str, str], port: int) -> tuple[subprocess.Popen[bytes], float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}")
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError("server did not become ready")


def _latency(port: int, paths: list[str]) -> dict[str, float]:
    lat = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        c.get(paths[0])
        for p in paths:
            t0 = time.perf_counter()
            r = c.get(p)
            lat.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
    a = np.array(lat)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--movies", type=int, default=None)
    ap.add_argument("--strategies", default="popularity,itemknn,als,ease,mf")
    ap.add_argument("--serve", default="popularity,als", help="Strategies of the served bundle.")
    ap.add_argument("--spark", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--step-timeout", type=float, default=3600)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="movierec-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "release"
    env = {**os.environ, "MOVIEREC_HOME": str(work / "home"), "MOVIEREC_LOG_LEVEL": "WARNING"}
    mr = str(BIN / "movierec")
    rows: list[dict[str, Any]] = []

    def step(name: str, cmd: list[str], baseline: dict[str, Any] | None = None) -> dict[str, Any]:
        r = _timed(cmd, env, args.step_timeout)
        status = (
            "ok" if r["rc"] == 0 else ("refused" if "would need about" in r["tail"] else "failed")
        )
        row = {"step": name, "status": status, **r}
        if baseline is not None:
            row["baseline"] = {k: baseline[k] for k in ("step", "seconds", "peak_rss_mb")}
            row["ratio_seconds"] = round(r["seconds"] / max(baseline["seconds"], 1e-9), 2)
        if status == "ok":
            row.pop("tail")
        rows.append(row)
        print(
            f"{name:28s} {status:8s} {r['seconds']:9.1f} s {r['peak_rss_mb']:9.0f} MB"
            + (f"   ({row['ratio_seconds']}x {baseline['step']})" if baseline else ""),
            flush=True,
        )
        return row

    synth = [mr, "data", "synth", "--out", str(data), "--ratings", str(args.ratings)]
    if args.users:
        synth += ["--users", str(args.users)]
    if args.movies:
        synth += ["--movies", str(args.movies)]
    if not (data / "ratings.csv").exists():
        step("synth", synth)
    read = step(
        "baseline: pyarrow read_csv",
        [
            sys.executable,
            "-c",
            f"import pyarrow.csv as c; c.read_csv({str(data / 'ratings.csv')!r})",
        ],
    )
    step("ingest", [mr, "data", "ingest", str(data)], read)
    fits: dict[str, dict[str, Any]] = {}
    for name in [s for s in args.strategies.split(",") if s]:
        out = work / f"eval-{name}.json"
        fits[name] = step(
            f"fit+evaluate {name}",
            [mr, "evaluate", "--dataset", "store", "--models", name, "--output", str(out)],
        )
        if out.exists():
            fits[name]["metrics"] = {
                k: v
                for k, v in json.loads(out.read_text())["models"][name].items()
                if k in ("ndcg@10", "recall@10", "fit_seconds", "eval_seconds")
            }
    if args.spark:
        out = work / "eval-als-spark.json"
        row = step(
            "fit+evaluate als (spark)",
            [mr, "evaluate", "--dataset", "store", "--models", "als", "--engine", "spark",
             "--output", str(out)],
            fits.get("als"),
        )  # fmt: skip
        if out.exists():
            row["metrics"] = {
                k: v
                for k, v in json.loads(out.read_text())["models"]["als"].items()
                if k in ("ndcg@10", "recall@10", "fit_seconds", "eval_seconds")
            }
    default = args.serve.split(",")[-1]
    step(
        "train+publish",
        [mr, "train", "--dataset", "store", "--model", default, "--strategies", args.serve,
         "--no-evaluate"],
    )  # fmt: skip

    service: dict[str, Any] = {}
    users = list(range(1, 201))
    for label, cmd_target in (("bare FastAPI", "bare"), ("movierec serve", "movierec")):
        port = free_port()
        if cmd_target == "bare":
            cmd = [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port),
                   "--log-level", "warning"]  # fmt: skip
            srv_env = {**env, "PYTHONPATH": str(HERE)}
            paths = [f"/recommend/user/{u}?k=10" for u in users]
        else:
            cmd = [mr, "serve", "--host", "127.0.0.1", "--port", str(port)]
            srv_env = {**env, "MOVIEREC_WARM_CACHE": "false"}
            paths = [f"/recommend/user/{u}?k=10" for u in users]
        proc, ready = _serve(cmd, srv_env, port)
        try:
            rss = _rss_mb(proc.pid)
            lat = _latency(port, paths)
        finally:
            proc.terminate()
            proc.wait(30)
        service[label] = {"ready_s": round(ready, 2), "rss_mb": round(rss, 1), **lat}
        print(
            f"{label:28s} ready {ready:6.2f} s  RSS {rss:7.0f} MB  "
            f"p50 {lat['p50_ms']:.2f} ms  p99 {lat['p99_ms']:.2f} ms",
            flush=True,
        )
    result = {
        "ratings": args.ratings,
        "users": args.users,
        "movies": args.movies,
        "machine": {"cpus": os.cpu_count(), "memory_gb": _memory_gb()},
        "steps": rows,
        "service": service,
    }
    out = args.output or HERE / "results" / f"scale-{args.ratings}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def _memory_gb() -> float:
    text = Path("/proc/meminfo").read_text()
    m = re.search(r"MemTotal:\s+(\d+)", text)
    return round(int(m.group(1)) / 1024**2, 1) if m else float("nan")


if __name__ == "__main__":
    main()
