"""Prometheus metrics of the stream consumer (served by ``--metrics-port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class StreamMetrics:
    """Events, rejects, stored rows, lag and rate of one consumer process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("movierec_stream_events", "Events consumed", registry=self.registry)
        self.rejects = Counter("movierec_stream_rejects", "Events rejected", registry=self.registry)
        self.stored = Counter(
            "movierec_stream_stored", "New rows stored", ["table"], registry=self.registry
        )
        self.lag = Gauge(
            "movierec_stream_lag",
            "Messages behind the high watermark",
            ["partition"],
            registry=self.registry,
        )
        self.rate = Gauge(
            "movierec_stream_events_per_second",
            "Events per second since start",
            registry=self.registry,
        )

    def batch(self, events: int, rejects: int, feedback: int, served: int) -> None:
        """Count one stored batch."""
        self.events.inc(events)
        self.rejects.inc(rejects)
        self.stored.labels("feedback").inc(feedback)
        self.stored.labels("served").inc(served)

    def set_lag(self, lag: dict[int, int], rate: float) -> None:
        """Update the lag per partition and the rate."""
        for p, v in lag.items():
            self.lag.labels(str(p)).set(v)
        self.rate.set(rate)

    def serve(self, port: int) -> None:
        """Expose ``/metrics`` on 127.0.0.1:``port``."""
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
