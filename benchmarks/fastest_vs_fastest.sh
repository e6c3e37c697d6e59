#!/usr/bin/env bash
# Issue 14's speed target: ASGE in its fastest setting against backprop in backprop's fastest, on
# one machine in one sitting. Four settings take turns (eager and --compile, each method; every
# measurement its own `ffvision bench` process at the run's default precision), TURNS rounds; the
# median of each is printed and the JSON lines go to OUT. DROPOUT (optional) sets the dropout of
# both methods; unset, each runs at its own default (asge 0, bp 0.1), as `ffvision train` does.
#
#   bash benchmarks/fastest_vs_fastest.sh [TURNS] [OUT]
#   DROPOUT=0 bash benchmarks/fastest_vs_fastest.sh 3     # the same network work for both
set -euo pipefail
TURNS=${1:-3}
OUT=${2:-benchmarks/results/fastest_vs_fastest.jsonl}
PY=${PYTHON:-python}
tmp=$(mktemp -d)
for t in $(seq "$TURNS"); do
  for method in asge bp; do
    for mode in eager compile; do
      flag=""; [ "$mode" = compile ] && flag="--compile"
      [ -n "${DROPOUT:-}" ] && flag="$flag --dropout $DROPOUT"
      $PY -m ffvision bench --method "$method" --model vgg8 --width-mult 0.25 --batch-size 128 --device cpu \
          --steps 20 $flag --json "$tmp/$method-$mode-$t.json" > /dev/null 2>&1
      echo "turn $t: $method $mode $($PY -c "import json,sys; print(round(json.load(open(sys.argv[1]))['runs']['$method']['images_per_second'], 1))" "$tmp/$method-$mode-$t.json") img/s"
    done
  done
done
$PY - "$tmp" "$OUT" "$TURNS" "${DROPOUT:-default}" <<'PY'
import glob, json, os, platform, statistics, subprocess, sys
tmp, out, turns, dropout = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
med = {}
for method in ("asge", "bp"):
    for mode in ("eager", "compile"):
        vals = [json.load(open(f))["runs"][method]["images_per_second"] for f in sorted(glob.glob(f"{tmp}/{method}-{mode}-*.json"))]
        med[f"{method}-{mode}"] = {"median": round(statistics.median(vals), 1), "all": [round(v, 1) for v in vals]}
best = {m: max(("eager", "compile"), key=lambda k: med[f"{m}-{k}"]["median"]) for m in ("asge", "bp")}
ratio = med[f"asge-{best['asge']}"]["median"] / med[f"bp-{best['bp']}"]["median"]
rec = {"commit": commit, "machine": platform.processor() or platform.machine(), "turns": turns, "dropout": dropout,
       "img_per_s": med,
       "fastest": best, "asge_fastest_over_bp_fastest": round(ratio, 3)}
print(json.dumps(rec))
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "a") as fh:
    fh.write(json.dumps(rec) + "\n")
PY
rm -rf "$tmp"
