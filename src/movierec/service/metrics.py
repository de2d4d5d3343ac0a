"""Prometheus metrics of the service (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "movierec_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "movierec_request_seconds",
    "Request latency",
    ["route"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
FALLBACKS = Counter(
    "movierec_fallbacks_total", "Answers from the fallback chain", ["source"], registry=REGISTRY
)
MODEL_INFO = Info("movierec_model", "The served model version", registry=REGISTRY)
SATURATED = Counter(
    "movierec_saturated_total",
    "Expensive requests refused with 503 because every worker slot was busy",
    registry=REGISTRY,
)
CACHE_BYTES = Gauge(
    "movierec_answer_cache_bytes", "Bytes held by the answer caches", registry=REGISTRY
)
CACHE_EVICTIONS = Counter(
    "movierec_answer_cache_evictions_total",
    "Answers evicted to stay under the byte budget",
    registry=REGISTRY,
)
BUNDLE_FALLBACKS = Counter(
    "movierec_bundle_fallbacks_total",
    "Start-ups that served an older verified bundle because CURRENT did not verify",
    registry=REGISTRY,
)
FEEDBACK_REFRESHED = Counter(
    "movierec_stream_users_refreshed_total",
    "Users whose history changed through events stored by another process (the stream)",
    registry=REGISTRY,
)
ONLINE_WTR = Gauge(
    "movierec_online_wtr",
    "Watch-through rate of served lists in the attribution window, per model version or variant",
    ["served_by"],
    registry=REGISTRY,
)
ONLINE_LISTS = Gauge(
    "movierec_online_lists",
    "Served lists evaluated online, per model version or variant",
    ["served_by"],
    registry=REGISTRY,
)
SCORING_BATCHES = Counter(
    "movierec_scoring_batches_total",
    "Per-request scoring calls (each scores every history row queued for its model)",
    registry=REGISTRY,
)
SCORING_ROWS = Counter(
    "movierec_scoring_rows_total",
    "History rows scored per request (rows / batches is the mean batch size)",
    registry=REGISTRY,
)
