"""Speed of TimesFM 2.5 (the released 200M configuration) on this machine's CPU, weights random.

The real checkpoint cannot be downloaded here, but speed depends only on the architecture: this builds
the package's own ``TimesFM_2p5_200M_torch`` with randomly initialised weights (231 M parameters) and
times the member's forecasting call (the same ``ForecastConfig`` as ``training.forecasting.foundation``)
on Poisson series, with and without flip invariance. Accuracy figures need the real weights
(``python -m bench.m4_weekly --timesfm`` with ``STOCKML_TIMESFM_CHECKPOINT`` set).

Example::

    python -m bench.timesfm_cpu --series 64 --context 512 --horizon 13 --out bench/results/timesfm_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.timesfm_cpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--series", type=int, default=64)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--horizon", type=int, default=13)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)

    import torch
    from timesfm import ForecastConfig

    from training.forecasting.foundation import model_class

    torch.manual_seed(0)
    start = time.perf_counter()
    model = model_class(None)(torch_compile=False)
    model.model.eval()
    params = sum(t.numel() for t in model.model.parameters())
    print(f"built TimesFM 2.5 ({params / 1e6:.0f} M parameters, random weights) in {time.perf_counter() - start:.1f} s")
    runs = []
    rng = np.random.default_rng(0)
    ys = [rng.poisson(5, args.context + 50).astype(float)[-args.context :] for _ in range(args.series)]
    for flip in (True, False):
        model.compile(
            ForecastConfig(
                max_context=args.context, max_horizon=args.horizon, per_core_batch_size=args.batch_size,
                normalize_inputs=True, use_continuous_quantile_head=True, force_flip_invariance=flip,
                infer_is_positive=True, fix_quantile_crossing=True,
            )
        )  # fmt: skip
        start = time.perf_counter()
        model.forecast(args.horizon, list(ys))
        dt = time.perf_counter() - start
        runs.append({"flip_invariance": flip, "seconds": round(dt, 2), "series_per_s": round(args.series / dt, 2)})
        print(
            f"flip_invariance={flip}: {args.series} series, context {args.context}, h {args.horizon}: "
            f"{dt:.1f} s ({args.series / dt:.1f} series/s, {torch.get_num_threads()} threads)"
        )
    if args.out:
        payload = {
            "bench": "timesfm_cpu",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m bench.timesfm_cpu " + shlex.join(sys.argv[1:] if argv is None else argv),
            "model": "TimesFM_2p5_200M_torch (random weights)",
            "parameters": params,
            "series": args.series, "context": args.context, "horizon": args.horizon, "batch_size": args.batch_size,
            "torch_threads": torch.get_num_threads(),
            "runs": runs,
            "machine": {"nproc": os.cpu_count(), "platform": platform.platform(), "load_1m": os.getloadavg()[0]},
        }  # fmt: skip
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
