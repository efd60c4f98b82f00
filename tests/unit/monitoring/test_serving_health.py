"""monitoring.serving_health: Prometheus text (BentoML's and ours) into figures, hand-computed.

The text below has the exposition format and names BentoML 1.4 and :mod:`serving.bentos.engine`
write; tests/system/test_serving.py checks the same functions on a running service's ``/metrics``.
"""

from __future__ import annotations

import pytest

from monitoring.serving_health import histogram_quantile, serving_health

LABELS = 'service_name="StockForecaster",service_version="not available"'
TEXT = f"""# HELP bentoml_service_request_total Total number of HTTP requests
# TYPE bentoml_service_request_total counter
bentoml_service_request_total{{endpoint="/forecast",http_response_code="200",{LABELS}}} 8.0
bentoml_service_request_total{{endpoint="/forecast",http_response_code="400",{LABELS}}} 1.0
bentoml_service_request_total{{endpoint="/forecast",http_response_code="500",{LABELS}}} 1.0
bentoml_service_request_total{{endpoint="/metrics",http_response_code="200",{LABELS}}} 40.0
# HELP bentoml_service_request_duration_seconds API HTTP request duration in seconds
# TYPE bentoml_service_request_duration_seconds histogram
bentoml_service_request_duration_seconds_bucket{{endpoint="/forecast",http_response_code="200",le="0.1",{LABELS}}} 4.0
bentoml_service_request_duration_seconds_bucket{{endpoint="/forecast",http_response_code="200",le="0.5",{LABELS}}} 8.0
bentoml_service_request_duration_seconds_bucket{{endpoint="/forecast",http_response_code="200",le="+Inf",{LABELS}}} 8.0
bentoml_service_request_duration_seconds_count{{endpoint="/forecast",http_response_code="200",{LABELS}}} 8.0
bentoml_service_request_duration_seconds_sum{{endpoint="/forecast",http_response_code="200",{LABELS}}} 1.6
bentoml_service_request_duration_seconds_bucket{{endpoint="/forecast",http_response_code="400",le="0.1",{LABELS}}} 2.0
bentoml_service_request_duration_seconds_bucket{{endpoint="/forecast",http_response_code="400",le="0.5",{LABELS}}} 2.0
bentoml_service_request_duration_seconds_bucket{{endpoint="/forecast",http_response_code="400",le="+Inf",{LABELS}}} 2.0
bentoml_service_request_duration_seconds_count{{endpoint="/forecast",http_response_code="400",{LABELS}}} 2.0
bentoml_service_request_duration_seconds_sum{{endpoint="/forecast",http_response_code="400",{LABELS}}} 0.1
# HELP stockml_forecast_cache_total Per-SKU forecast cache lookups by result (hit/miss)
# TYPE stockml_forecast_cache_total counter
stockml_forecast_cache_total{{result="hit"}} 3.0
stockml_forecast_cache_total{{result="miss"}} 1.0
"""


def test_requests_errors_latency_and_cache():
    h = serving_health(TEXT)
    overall = h["requests"]["overall"]
    assert overall["requests"] == 10  # the /metrics probes are left out
    assert overall["error_rate_4xx"] == pytest.approx(0.1) and overall["error_rate_5xx"] == pytest.approx(0.1)
    lat = h["latency"]["/forecast"]
    assert lat["requests"] == 10 and lat["mean_s"] == pytest.approx(0.17)
    # buckets over both codes: <=0.1: 6, <=0.5: 10; p50 rank 5 -> 0.1 * 5/6; p95 rank 9.5 -> 0.1 + 0.4 * 3.5/4
    assert lat["p50_s"] == pytest.approx(0.1 * 5 / 6) and lat["p95_s"] == pytest.approx(0.45)
    assert h["cache"] == {"lookups": 4, "hits": 3, "hit_rate": 0.75}
    assert h["bandit"] is None


def test_quantile_edges_and_an_idle_service():
    assert histogram_quantile(0.99, [(1.0, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(1.0, 1.0), (float("inf"), 10.0)]) == 1.0  # in +Inf: the top finite bound
    idle = serving_health("")
    assert idle["requests"]["overall"] == {"requests": 0, "error_rate_4xx": None, "error_rate_5xx": None}
    assert idle["cache"]["hit_rate"] is None and idle["latency"] == {}


def test_bandit_state_is_kept_as_the_service_reports_it():
    state = {"champion": "1", "challenger": "2", "traffic_shares": {"champion": 0.7, "challenger": 0.3},
             "p_challenger_better": 0.3, "posteriors": {"1": {"alpha": 3, "beta": 2}}, "stopped": False}  # fmt: skip
    b = serving_health("", state)["bandit"]
    assert b["traffic_shares"] == {"champion": 0.7, "challenger": 0.3} and b["posteriors"]["1"]["alpha"] == 3
