"""Serving health from the service's own numbers: its Prometheus ``/metrics`` text and its ``/bandit`` state.

From BentoML's HTTP instruments (namespace ``bentoml_service``): the request counter
(``request_total`` by endpoint and ``http_response_code``) gives request counts and the 4xx/5xx
shares, the duration histogram (``request_duration_seconds``) the mean and the p50/p95/p99
latency per endpoint, estimated from the buckets as Prometheus' ``histogram_quantile`` does
(linear inside the bucket). From ours (:mod:`serving.bentos.engine`): the per-SKU forecast cache
lookups (``stockml_forecast_cache_total`` by ``result``) give the hit rate. The bandit's state
(the ``/bandit`` answer: posteriors per version, traffic shares, P(challenger better)) is kept as
the service reports it.

Prometheus counters are cumulative since the process started: these are figures over the
service's life, not per day. Probe endpoints (``/metrics``, ``/healthz``, ``/livez``, ``/readyz``)
are left out of the latency and error figures: they are the monitor's own traffic.

The text is parsed with ``prometheus_client.parser`` (the client library's own parser).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "bentoml_service_request"
DURATION = "bentoml_service_request_duration_seconds"
CACHE = "stockml_forecast_cache"
PROBES = frozenset({"/metrics", "/healthz", "/livez", "/readyz"})
QUANTILES = (0.5, 0.95, 0.99)
# The bandit's decisions as the service records them (``serving_bandit_decisions.action``), named once here
# for both sides: the service writes them (:mod:`serving.bentos.traffic`), monitoring alerts them
# (:mod:`stockml.steps.monitoring_alerts`), and the application layer may not import the service.
STOP, PROMOTE, REFUSED, FAILED = "stop", "promote", "promote_refused", "promote_failed"


def parse_metrics(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Family name → its samples as (sample name, labels, value)."""
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = [(s.name, dict(s.labels), float(s.value)) for s in family.samples]
    return out


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile from cumulative (upper bound, count) buckets, as Prometheus estimates it.

    Linear interpolation inside the bucket that holds the rank; the lowest bucket starts at 0;
    a rank in the ``+Inf`` bucket returns the highest finite bound. None without observations.
    """
    b = sorted(buckets)
    if not b or b[-1][1] <= 0:
        return None
    rank = q * b[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in b:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def request_figures(metrics: dict[str, list[tuple[str, dict[str, str], float]]]) -> dict[str, Any]:
    """Requests, 4xx and 5xx shares overall and per endpoint (probes left out)."""
    per: dict[str, dict[str, float]] = defaultdict(lambda: {"requests": 0.0, "4xx": 0.0, "5xx": 0.0})
    for name, labels, value in metrics.get(REQUESTS, []):
        endpoint = labels.get("endpoint", "")
        if not name.endswith("_total") or endpoint in PROBES:
            continue
        code = labels.get("http_response_code", "")
        per[endpoint]["requests"] += value
        if code.startswith("4"):
            per[endpoint]["4xx"] += value
        elif code.startswith("5"):
            per[endpoint]["5xx"] += value
    total = {k: sum(e[k] for e in per.values()) for k in ("requests", "4xx", "5xx")}
    return {"overall": _shares(total), "by_endpoint": {ep: _shares(v) for ep, v in sorted(per.items())}}


def _shares(counts: dict[str, float]) -> dict[str, float | None]:
    n = counts["requests"]
    return {
        "requests": int(n),
        "error_rate_4xx": counts["4xx"] / n if n else None,
        "error_rate_5xx": counts["5xx"] / n if n else None,
    }


def latency_figures(metrics: dict[str, list[tuple[str, dict[str, str], float]]]) -> dict[str, dict[str, float | None]]:
    """Mean and p50/p95/p99 latency in seconds per endpoint (all response codes together; probes left out)."""
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    for name, labels, value in metrics.get(DURATION, []):
        endpoint = labels.get("endpoint", "")
        if endpoint in PROBES:
            continue
        if name.endswith("_bucket"):
            buckets[endpoint][float(labels["le"])] += value
        elif name.endswith("_sum"):
            sums[endpoint] += value
        elif name.endswith("_count"):
            counts[endpoint] += value
    out = {}
    for endpoint in sorted(counts):
        n = counts[endpoint]
        b = list(buckets[endpoint].items())
        out[endpoint] = {
            "requests": int(n),
            "mean_s": sums[endpoint] / n if n else None,
            **{f"p{round(q * 100)}_s": histogram_quantile(q, b) for q in QUANTILES},
        }
    return out


def cache_figures(metrics: dict[str, list[tuple[str, dict[str, str], float]]]) -> dict[str, float | None]:
    """Per-SKU forecast cache lookups and the hit rate (None before any lookup)."""
    hits = misses = 0.0
    for name, labels, value in metrics.get(CACHE, []):
        if not name.endswith("_total"):
            continue
        if labels.get("result") == "hit":
            hits += value
        elif labels.get("result") == "miss":
            misses += value
    lookups = hits + misses
    return {"lookups": int(lookups), "hits": int(hits), "hit_rate": hits / lookups if lookups else None}


def bandit_figures(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """The bandit's traffic split and posteriors from its ``/bandit`` state (None when not known)."""
    if not state:
        return None
    return {
        "champion": state.get("champion"),
        "challenger": state.get("challenger"),
        "traffic_shares": state.get("traffic_shares"),
        "p_challenger_better": state.get("p_challenger_better"),
        "posteriors": state.get("posteriors", {}),
        "stopped": state.get("stopped"),
    }


def serving_health(metrics_text: str, bandit_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Requests and error shares, latency, cache hit rate and the bandit, from one ``/metrics`` text."""
    metrics = parse_metrics(metrics_text)
    return {
        "requests": request_figures(metrics),
        "latency": latency_figures(metrics),
        "cache": cache_figures(metrics),
        "bandit": bandit_figures(bandit_state),
    }
