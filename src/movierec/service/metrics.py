"""Prometheus metrics of the service (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

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
