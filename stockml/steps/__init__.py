"""The pipeline's steps, one module each; :mod:`stockml.pipeline` composes them.

ingest → classify → tune the zoo → backtest → AutoML → router (train + register) → promote →
forecast (with the champion, or per-SKU best methods without a router). Each step takes a
:class:`stockml.run.Run`, reads what earlier steps left in its :class:`~stockml.layout.RunLayout`
and writes its own artifacts there, so the CLI and the Airflow tasks call the same functions.
Steps import the run, the settings and the libraries, never each other's callers.
"""
