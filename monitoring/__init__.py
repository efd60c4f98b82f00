"""monitoring: a plain library (no Airflow, no settings) for watching the forecasts in service.

:mod:`monitoring.forecast_quality` scores served forecasts against the demand observed since.
"""
