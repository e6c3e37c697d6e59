#!/usr/bin/env bash
# Does `ffvision bench` measure what `ffvision train` logs? ASGE (and bp), VGG8 x0.25, batch 128, the
# defaults of both commands (--amp auto), taking turns twice so that a slow minute of the machine hits both.
#   bash benchmarks/bench_vs_train.sh [OUT]        # prints one line per measurement
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
OUT=${1:-/tmp/bench-vs-train}
mkdir -p "$OUT"
for m in ${METHODS:-asge bp}; do
  for turn in 1 2; do
    $PY -m ffvision bench --method $m --model vgg8 --width-mult 0.25 --batch-size 128 --device cpu --steps 30 \
      --warmup 5 --json "$OUT/bench-$m-$turn.json" > /dev/null
    $PY -m ffvision train --method $m --model vgg8 --width-mult 0.25 --dataset fashion-mnist --train-subset 10000 \
      --epochs 1 --val-size 1000 --batch-size 128 --device cpu --out "$OUT/train-$m-$turn" --force > "$OUT/train-$m-$turn.log" 2>&1
    $PY - "$OUT" $m $turn <<'PY'
import json, sys
out, m, turn = sys.argv[1:]
b = json.load(open(f"{out}/bench-{m}-{turn}.json"))["runs"][m]["images_per_second"]
t = json.load(open(f"{out}/train-{m}-{turn}/summary.json"))["train_images_per_second"]
print(f"{m} turn {turn}: bench {b:.0f} img/s, train {t:.0f} img/s, train/bench {t / b:.2f}", flush=True)
PY
  done
done
