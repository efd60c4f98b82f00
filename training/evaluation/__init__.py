"""Evaluation of the forecasting router against single methods and the classical Croston/ETS rule."""
