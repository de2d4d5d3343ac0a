"""The service's own request log on the event stream (optional): one line per answer.

With ``MOVIEREC_REQUEST_LOG_TOPIC`` set, every ``GET /recommend/user/{id}`` answer is produced
to that topic as the reference system's log line, ``<time>,<user>,recommendation request
<server>, status 200, result: <ids>, <ms> ms``, where the server is the experiment variant when
one answered (``experiment/variant``) and else the model version; the stream consumer stores it
in the served-recommendations table, which online evaluation reads. Producing is asynchronous
(librdkafka's queue): a slow or absent broker never delays an answer; lines that cannot be
queued are counted and dropped.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from movierec.streams.producer import producer_config, stamp

logger = logging.getLogger(__name__)


class RequestLog:
    """A non-blocking producer of request-log lines."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.dropped = 0
        self.producer = Producer(producer_config(bootstrap) | {"acks": "1"})

    def record(self, user_id: int, body: bytes | str, server: str, latency_ms: float) -> None:
        """Queue the line of one answer (its ids read from the rendered JSON)."""
        try:
            items: list[dict[str, Any]] = json.loads(body).get("items", [])
            ids = ", ".join(str(i["movie_id"]) for i in items)
            line = (
                f"{stamp(time.time())},{user_id},recommendation request {server}, status 200, "
                f"result: {ids}, {latency_ms:.0f} ms"
            )
            self.producer.produce(self.topic, line.encode(), key=str(user_id).encode())
            self.producer.poll(0)
        except BufferError:
            self.dropped += 1
        except Exception as e:
            self.dropped += 1
            logger.debug("request log line dropped: %s", e)

    def close(self) -> None:
        """Deliver what is queued (up to 5 s)."""
        self.producer.flush(5)
