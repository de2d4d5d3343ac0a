"""`make stack` / `make stack-down`: the deployment's topology as local processes.

deploy/docker-compose.yml runs the stack in containers; here the same components run as
processes on 127.0.0.1 under honcho (deploy/Procfile), configured only through the
environment (deploy/stack.env, overridable by the caller's environment): the Tansu broker,
an MLflow server on PostgreSQL, the API with several workers, the Streamlit UI, the
scheduler and the stream consumer, over this machine's PostgreSQL (store, feedback, MLflow)
and Redis (answers shared by the API workers).

    python deploy/stack.py up      # start, bootstrap data and a first model, wait until healthy
    python deploy/stack.py status  # what runs
    python deploy/stack.py down    # stop everything, check nothing is left
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
logger = logging.getLogger("stack")


def load_env() -> dict[str, str]:
    """deploy/stack.env under the caller's environment (the caller wins)."""
    env: dict[str, str] = {}
    for line in (DEPLOY / "stack.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    env |= {k: v for k, v in os.environ.items() if k.startswith(("MOVIEREC_", "STACK_"))}
    home = Path(env["MOVIEREC_HOME"])
    env["MOVIEREC_HOME"] = str(home if home.is_absolute() else ROOT / home)
    pg = env["STACK_POSTGRES"]
    env.setdefault("MOVIEREC_DATABASE_URL", f"{pg}/{env['STACK_DATABASE']}")
    env.setdefault("STACK_MLFLOW_BACKEND", f"{pg}/{env['STACK_MLFLOW_DATABASE']}")
    env.setdefault("MOVIEREC_MLFLOW_URI", f"http://127.0.0.1:{env['STACK_MLFLOW_PORT']}")
    env.setdefault("MOVIEREC_KAFKA_BOOTSTRAP", f"127.0.0.1:{env['STACK_BROKER_PORT']}")
    env.setdefault("MOVIEREC_SERVICE_URL", f"http://127.0.0.1:{env['STACK_API_PORT']}")
    return {**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def state_dir(env: dict[str, str]) -> Path:
    """Where the stack keeps its pid file and logs."""
    return Path(env["MOVIEREC_HOME"]) / "run"


def ensure_databases(env: dict[str, str]) -> None:
    """Create the store's and MLflow's PostgreSQL databases when missing."""
    engine = sa.create_engine(f"{env['STACK_POSTGRES']}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as con:
        have = {r[0] for r in con.execute(sa.text("SELECT datname FROM pg_database"))}
        for name in (env["STACK_DATABASE"], env["STACK_MLFLOW_DATABASE"]):
            if name not in have:
                con.execute(sa.text(f'CREATE DATABASE "{name}"'))
                logger.info("created database %s", name)
    engine.dispose()


def drop_databases(env: dict[str, str]) -> None:
    """Drop the stack's databases (``down --purge``)."""
    engine = sa.create_engine(f"{env['STACK_POSTGRES']}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as con:
        for name in (env["STACK_DATABASE"], env["STACK_MLFLOW_DATABASE"]):
            con.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def port_open(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def ports(env: dict[str, str]) -> dict[str, int]:
    """The port of each component."""
    return {
        "broker": int(env["STACK_BROKER_PORT"]),
        "mlflow": int(env["STACK_MLFLOW_PORT"]),
        "api": int(env["STACK_API_PORT"]),
        "ui": int(env["STACK_UI_PORT"]),
        "consumer": int(env["STACK_CONSUMER_METRICS_PORT"]),
    }


def wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check()`` until true."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                logger.info("%s is up", what)
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def running_pid(env: dict[str, str]) -> int | None:
    """The honcho process of a running stack, if any."""
    pid_file = state_dir(env) / "honcho.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def movierec(env: dict[str, str], *args: str) -> None:
    """Run one movierec command of the bootstrap (fails loudly)."""
    logger.info("movierec %s", " ".join(args))
    subprocess.run([str(BIN / "movierec"), *args], env=env, check=True, cwd=ROOT)


def up(timeout: float = 300.0) -> dict[str, str]:
    """Start every component, bootstrap data and a first model, wait until all are healthy."""
    env = load_env()
    if running_pid(env) is not None:
        raise SystemExit("the stack is already running (make stack-down first)")
    busy = [f"{n} :{p}" for n, p in ports(env).items() if port_open(p)]
    if busy:
        raise SystemExit(f"ports in use: {', '.join(busy)} (set STACK_*_PORT)")
    ensure_databases(env)
    folder = state_dir(env)
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "stack.log").open("ab")
    proc = subprocess.Popen(
        [str(BIN / "honcho"), "-f", str(DEPLOY / "Procfile"), "-d", str(ROOT), "start"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # one session: down finds every process of it
    )
    (folder / "honcho.pid").write_text(str(proc.pid))
    try:
        p = ports(env)
        wait("mlflow", lambda: httpx.get(f"http://127.0.0.1:{p['mlflow']}/health").is_success, 120)
        wait("broker", lambda: port_open(p["broker"]), 60)
        current = Path(env["MOVIEREC_HOME"]) / "bundles" / "CURRENT"
        if not current.exists():
            movierec(env, "data", "ingest", env["STACK_DATASET"])
            strategies = ",".join(json.loads(env["MOVIEREC_TRAIN_STRATEGIES"]))
            movierec(
                env,
                "train",
                "--dataset",
                "store",
                "--model",
                env["MOVIEREC_TRAIN_MODEL"],
                "--strategies",
                strategies,
            )
        wait("api", lambda: httpx.get(f"http://127.0.0.1:{p['api']}/ready").is_success, timeout)
        wait("ui", lambda: httpx.get(f"http://127.0.0.1:{p['ui']}/").is_success, 120)
        wait("consumer", lambda: port_open(p["consumer"]), 120)
        if proc.poll() is not None:
            raise RuntimeError("honcho exited")
    except BaseException:
        down(env)
        raise
    logger.info(
        "stack up: API http://127.0.0.1:%s  UI http://127.0.0.1:%s  MLflow http://127.0.0.1:%s"
        "  Kafka 127.0.0.1:%s (logs: %s)",
        p["api"],
        p["ui"],
        p["mlflow"],
        p["broker"],
        folder / "stack.log",
    )
    return env


def down(env: dict[str, str] | None = None, timeout: float = 20.0) -> None:
    """Stop honcho (it stops its processes), kill any process of the stack left, check ports."""
    env = env or load_env()
    pid = running_pid(env)
    if pid is not None:
        tree = [pid, *descendants(pid)]  # before honcho exits and orphans are re-parented
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline and alive(tree):
            time.sleep(0.2)
        left = alive(tree)
        if left:
            logger.warning(
                "killing %d processes that did not stop within %.0f s", len(left), timeout
            )
            for p in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.5)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    (state_dir(env) / "honcho.pid").unlink(missing_ok=True)
    busy = [f"{n} :{p}" for n, p in ports(env).items() if port_open(p)]
    if busy:
        raise SystemExit(f"still listening after stack-down: {', '.join(busy)}")
    logger.info("stack down: nothing running")


def _table() -> list[tuple[int, int, str, str]]:
    out = subprocess.run(
        ["ps", "-e", "-ww", "-o", "pid=,ppid=,stat=,args="], capture_output=True, text=True
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3:
            rows.append(
                (int(parts[0]), int(parts[1]), parts[2], parts[3] if len(parts) > 3 else "")
            )
    return rows


def descendants(pid: int) -> dict[int, str]:
    """Every live process below ``pid`` (honcho's children start their own sessions)."""
    rows = _table()
    children: dict[int, list[int]] = {}
    for p, pp, stat, _ in rows:
        if not stat.startswith("Z"):
            children.setdefault(pp, []).append(p)
    args = {p: a for p, _, _, a in rows}
    out: dict[int, str] = {}
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out[c] = args[c]
                todo.append(c)
    return out


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (zombies do not count)."""
    live = {p for p, _, stat, _ in _table() if not stat.startswith("Z")}
    return [p for p in pids if p in live]


def status() -> int:
    """Print each component's port state; exit 0 when the stack runs."""
    env = load_env()
    pid = running_pid(env)
    for name, port in ports(env).items():
        print(f"{name:9s} :{port}  {'up' if port_open(port) else 'down'}")
    print(f"honcho pid {pid}" if pid else "not running")
    return 0 if pid else 1


def main() -> None:
    """``up``, ``down [--purge]`` or ``status``."""
    logging.basicConfig(level=logging.INFO, format="stack: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    cmd = sys.argv[1] if len(sys.argv) > 1 else "status"
    if cmd == "up":
        up()
    elif cmd == "down":
        env = load_env()
        down(env)
        if "--purge" in sys.argv:
            drop_databases(env)
    elif cmd == "status":
        raise SystemExit(status())
    else:
        raise SystemExit("usage: stack.py up|down [--purge]|status")


if __name__ == "__main__":
    main()
