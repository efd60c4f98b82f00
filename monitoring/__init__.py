"""monitoring: a plain library (no Airflow, no settings) for watching the forecasts in service.

:mod:`monitoring.forecast_quality` scores served forecasts against the demand observed since (one
live MASE); :mod:`monitoring.quality` does it per model version, demand pattern and week for stored
and served forecasts and holds the degradation rule; :mod:`monitoring.decisions` prices the
recommended orders on the weeks that came; :mod:`monitoring.serving_health` reads the service's
Prometheus metrics and bandit state.
"""
