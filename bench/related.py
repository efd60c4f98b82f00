"""Related products on the demo: how many planted associations the default thresholds recover.

``python -m bench.related`` generates the demo catalogue and its order lines per (SKUs, seed),
mines the rules with the default settings (``stockml.settings.Settings``) and prints, per case,
recall (planted pairs found) and precision (found pairs that were planted), a planted rule being
the unordered SKU pair {antecedent, consequent}, plus the mining time. Writes
``bench/results/related.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from stockml.settings import Settings
from stockml.steps.related import related_config
from training.classification.related import related_products, score_rules
from training.data.demo import generate_catalogue
from training.data.demo_orders import generate_order_lines

CASES = ((300, 42), (300, 7), (300, 1), (1000, 42))


def run(cases=CASES, weeks: int = 156) -> dict:
    config = related_config(Settings())
    rows = []
    for skus, seed in cases:
        cat = generate_catalogue(skus, weeks, seed)
        lines, truth = generate_order_lines(cat.products, cat.movements, cat.seed, cat.end)
        t0 = time.perf_counter()
        found = related_products(lines, config)
        seconds = time.perf_counter() - t0
        score = score_rules(found, truth["planted_rules"])
        rows.append({"skus": skus, "weeks": weeks, "seed": seed, "orders": truth["orders"], "lines": truth["lines"],
                     "rules": len(found), "mine_s": round(seconds, 2), **score})  # fmt: skip
        print(
            f"{skus} SKUs seed {seed}: {truth['orders']:,} orders, {score['planted']} planted, "
            f"{score['found_pairs']} pairs found, recall {score['recall']:.0%}, precision {score['precision']:.0%}, "
            f"mined in {seconds:.1f} s"
        )
    return {
        "command": "python -m bench.related",
        "thresholds": {
            "min_support": config.min_support,
            "min_confidence": config.min_confidence,
            "min_lift": config.min_lift,
        },
        "machine": f"{platform.machine()} {platform.python_version()}",
        "cases": rows,
    }


def main() -> None:  # pragma: no cover
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "related.json")
    args = parser.parse_args()
    result = run()
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":  # pragma: no cover
    main()
