"""stockml: the application layer (settings, CLI, pipeline) over the `training` library.

statsforecast compiles its numba kernels in every process that first calls them, and reads whether to
keep them on disk (``NIXTLA_NUMBA_CACHE``) once, when it is imported. The backtest's worker pools (one
per SKU chunk), Spark's Python workers and Celery's task processes are all fresh processes, so without
the cache each one compiled every member again (py-spy on a 1,000-SKU backtest: a fifth of the workers'
samples in numba's compiler). The cache is on unless the environment says otherwise; it is set here,
before anything of this application imports statsforecast, because the libraries read no environment.
"""

import os

os.environ.setdefault("NIXTLA_NUMBA_CACHE", "1")

__version__ = "0.1.0"
