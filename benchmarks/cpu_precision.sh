#!/usr/bin/env bash
# Quick protocol (VGG8 x0.25, FashionMNIST, 10,000 images, 3 epochs, batch 128) of ASGE and bp in
# float32 and in bf16 autocast + channels_last on the CPU: accuracy and the img/s `train` logs.
#   bash benchmarks/cpu_precision.sh [OUT]           # OUT default /tmp/cpu-precision
#   BEFORE=/path/to/old/checkout bash benchmarks/cpu_precision.sh   # also the old code's defaults
# One run at a time (2 cores): img/s are only comparable when nothing else runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
OUT=${1:-/tmp/cpu-precision}
mkdir -p "$OUT"
Q="--model vgg8 --width-mult 0.25 --dataset fashion-mnist --train-subset 10000 --epochs 3 --batch-size 128 --device cpu --force"
run() {  # name, then train flags
  local name=$1; shift
  echo "== $name: ffvision train $Q $*" | tee "$OUT/$name.log"
  $PY -m ffvision train $Q --out "$OUT/$name" "$@" >> "$OUT/$name.log" 2>&1
  grep -E "img/s|test" "$OUT/$name.log" | tail -4
}
if [ -n "${BEFORE:-}" ]; then
  for m in asge bp; do
    echo "== before-$m (code at $BEFORE)" | tee "$OUT/before-$m.log"
    (cd "$BEFORE" && PYTHONPATH="$BEFORE" $PY -m ffvision train --method $m $Q --out "$OUT/before-$m") >> "$OUT/before-$m.log" 2>&1
    grep -E "img/s|test" "$OUT/before-$m.log" | tail -4
  done
fi
for m in asge bp; do
  run "$m-fp32" --method $m --amp off --no-channels-last
  run "$m-bf16-cl" --method $m --amp bf16 --channels-last
done
