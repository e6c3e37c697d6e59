"""Pick the best of a sweep's configurations on VALIDATION, then test that one alone, once.

Reads benchmarks/sweep_quick.py records (run with --runs-dir, so each config kept its best.pt), keeps those
whose name starts with --prefix, ranks them by their best validation accuracy of --strategy (goodness for
the FF methods: their own prediction rule), and evaluates only the winner's best.pt on the test split.
The other configurations' test accuracy is never computed.

    python benchmarks/pick_and_test.py --sweep benchmarks/results/sweep.jsonl --prefix ffcnn128- \\
        --strategy goodness --out benchmarks/results/picked.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from protocol import emit

from ffvision.train.run import evaluate_checkpoint


def best_val(record: dict, strategy: str) -> float:
    """Best validation accuracy of one strategy over a sweep record's epochs."""
    return max(epoch.get(strategy, -1.0) for epoch in record["val_by_epoch"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", required=True, help="sweep_quick.py JSON lines")
    ap.add_argument("--prefix", required=True, help="only configurations whose name starts with this")
    ap.add_argument("--strategy", default="goodness", help="the prediction strategy to select and test by")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="append the pick and its test record here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # the runs' progress
    records = [json.loads(line) for line in Path(args.sweep).read_text().splitlines() if line.strip()]
    records = [r for r in records if r["name"].startswith(args.prefix) and r.get("run_dir")]
    if not records:
        raise SystemExit(f"no record in {args.sweep} named {args.prefix}* with a run_dir")
    ranked = sorted(records, key=lambda r: best_val(r, args.strategy), reverse=True)
    pick = ranked[0]
    test = evaluate_checkpoint(Path(pick["run_dir"]) / "best.pt", device=args.device)
    out = {"picked": pick["name"], "by": f"best validation {args.strategy}", "val": best_val(pick, args.strategy),
           "ranking": [[r["name"], round(best_val(r, args.strategy), 4)] for r in ranked],
           "test_accuracy_by_strategy": test["test_accuracy_by_strategy"],
           "test_accuracy": test["test_accuracy_by_strategy"].get(args.strategy), "num_test": test["num_test"],
           "overrides": pick["overrides"], "commit": pick["commit"], "machine": pick["machine"]}
    emit(out, args.out)


if __name__ == "__main__":
    main()
