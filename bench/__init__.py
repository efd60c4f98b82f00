"""Reproducible benchmarks of the forecasting zoo against published competition results."""
