"""Prometheus metrics of the gateway (prometheus_client, served at /metrics).

``METRIC_NAMES`` lists the metric families as exposed; histograms add the
usual ``_bucket``/``_sum``/``_count`` series. Dashboards and alerts must only
use names from this list (a test checks that).
"""

from __future__ import annotations

import threading
from typing import Optional

METRIC_REQUESTS = "rayllm_requests_total"
METRIC_LATENCY = "rayllm_request_latency_seconds"
METRIC_TTFT = "rayllm_time_to_first_token_seconds"
METRIC_TOKENS = "rayllm_tokens_total"
METRIC_ERRORS = "rayllm_errors_total"
METRIC_IN_FLIGHT = "rayllm_requests_in_flight"

METRIC_NAMES = (
    METRIC_REQUESTS,  # counter {model, endpoint, status}
    METRIC_LATENCY,  # histogram {model, endpoint}
    METRIC_TTFT,  # histogram {model} (streaming requests)
    METRIC_TOKENS,  # counter {model, kind="prompt"|"completion"}
    METRIC_ERRORS,  # counter {model, type}
    METRIC_IN_FLIGHT,  # gauge {model}
)

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class GatewayMetrics:
    """Metric objects on a private registry (one per process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        try:  # *_created series only add noise here (per-process, per-label timestamps)
            from prometheus_client import disable_created_metrics

            disable_created_metrics()
        except ImportError:
            pass
        self.registry = CollectorRegistry(auto_describe=True)
        # prometheus_client appends _total to counters itself.
        self.requests = Counter(
            METRIC_REQUESTS[: -len("_total")],
            "Requests by model, endpoint and HTTP status.",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            METRIC_LATENCY,
            "End-to-end request latency.",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            METRIC_TTFT,
            "Time to first streamed token.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            METRIC_TOKENS[: -len("_total")],
            "Tokens processed by kind (prompt/completion).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.errors = Counter(
            METRIC_ERRORS[: -len("_total")],
            "Failed requests by model and error type.",
            ["model", "type"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            METRIC_IN_FLIGHT,
            "Requests being processed.",
            ["model"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


_instance: Optional[GatewayMetrics] = None
_lock = threading.Lock()


def get_metrics() -> GatewayMetrics:
    global _instance
    with _lock:
        if _instance is None:
            _instance = GatewayMetrics()
        return _instance
