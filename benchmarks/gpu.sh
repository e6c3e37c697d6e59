#!/usr/bin/env bash
# GPU benchmark matrix, batch-size sweeps of memory and img/s (32 px and 224 px), the full ASGE FashionMNIST
# recipe with backprop beside it, and the DeeperForward and HCL-FF FashionMNIST recipes.
#   bash benchmarks/gpu.sh                    # on a GPU machine: the real thing (hours)
#   TINY=1 DEVICE=cpu bash benchmarks/gpu.sh  # the same steps end to end in a minute (what the tests run)
# Writes JSON under $OUT (default benchmarks/results/gpu) and a markdown summary $OUT/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
if [ "${TINY:-0}" = 1 ]; then
  B=8; STEPS=1; WARM=1; W=0.0625; EPOCHS=1; SUBSET="--train-subset 256 --val-size 128 --eval-batch-size 64"
  SIZES=8,16; MICRO=8; BIG=32; BIG_SIZES=4,8; BIG_MICRO=4; BUDGET=512MiB
else
  B=128; STEPS=20; WARM=5; W=1; EPOCHS=100; SUBSET=""
  SIZES=64,128,256,512,1024,2048; MICRO=32; BIG=224; BIG_SIZES=16,32,64,128,256; BIG_MICRO=16; BUDGET=8GiB
fi
bench() { $PY -m ffvision bench --device "$DEVICE" --batch-size $B --steps $STEPS --warmup $WARM "$@"; }
sweep() { $PY -m ffvision bench --device "$DEVICE" --steps $STEPS --warmup $WARM --budget $BUDGET "$@"; }
# memory and img/s against the batch size, the local method and bp-accum at equal micro-batch (peak: CUDA allocator;
# per-layer checkpointing needs a layered model, so ResNet18 has no bp-checkpoint)
sweep --method asge --model vgg8 --width-mult $W --batch-sizes $SIZES --micro-batch-size $MICRO --compare bp,bp-checkpoint,bp-accum \
  --json "$OUT/sweep-asge-vgg8.json" --plot "$OUT/sweep-asge-vgg8.png"
sweep --method asge --model vgg11a --in-channels 3 --image-size $BIG --width-mult $W --batch-sizes $BIG_SIZES \
  --compare bp,bp-checkpoint,bp-accum \
  --micro-batch-size $BIG_MICRO --json "$OUT/sweep-asge-vgg11a-$BIG.json" --plot "$OUT/sweep-asge-vgg11a-$BIG.png"
sweep --method sff --model resnet18 --in-channels 3 --image-size $BIG --batch-sizes $BIG_SIZES --compare bp,bp-accum \
  --micro-batch-size $BIG_MICRO --json "$OUT/sweep-sff-resnet18-$BIG.json" --plot "$OUT/sweep-sff-resnet18-$BIG.png"
for amp in off bf16; do
  bench --method asge --model vgg8 --width-mult $W --compare bp,bp-checkpoint,bp-accum --amp $amp --no-channels-last \
    --json "$OUT/bench-asge-vgg8-amp-$amp.json"
  bench --method asge --model vgg8 --width-mult $W --compare bp --amp $amp --channels-last \
    --json "$OUT/bench-asge-vgg8-amp-$amp-cl.json"
done
bench --method asge --model vgg8 --width-mult $W --compare bp --amp off --no-channels-last --compile --json "$OUT/bench-asge-vgg8-compile.json"
bench --method sff --model resnet18 --compare bp --json "$OUT/bench-sff-resnet18.json"
for m in asge bp; do
  $PY -m ffvision train --config asge-fmnist --method $m --epochs $EPOCHS --device "$DEVICE" $SUBSET \
    --out "$OUT/recipe-asge-fmnist-$m" --force > "$OUT/recipe-asge-fmnist-$m.log" 2>&1
done
# the strongest published FF methods' FashionMNIST recipes (150 epochs each; TINY: one), beside ASGE's
for r in deeperforward-fmnist hclff-fmnist; do
  $PY -m ffvision train --config $r --device "$DEVICE" $SUBSET $([ "${TINY:-0}" = 1 ] && echo "--epochs 1 --width-mult 0.1") \
    --out "$OUT/recipe-$r" --force > "$OUT/recipe-$r.log" 2>&1
done
$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = ["| bench | method | img/s | exact peak MiB |", "|---|---|---|---|"]
for f in sorted(out.glob("bench-*.json")):
    r = json.loads(f.read_text())
    for name, run in r["runs"].items():
        lines.append(f"| {f.stem} | {name} | {run['images_per_second']:.1f} | {run['peak_memory_bytes'] / 2**20:.1f} |")
lines += ["", "| sweep | variant | batch: img/s, peak MiB | largest batch within the budget |", "|---|---|---|---|"]
for f in sorted(out.glob("sweep-*.json")):
    r = json.loads(f.read_text())
    for name, e in r["variants"].items():
        cells = ", ".join(f"{b}: {i:.0f}, {m / 2**20:.0f}" for b, i, m in
                          zip(r["batch_sizes"], e["images_per_second"], e["peak_memory_bytes"]))
        lines.append(f"| {f.stem} | {name} | {cells} | {e['largest_measured_batch_within_budget']} |")
lines += ["", "| recipe run | test accuracy by strategy |", "|---|---|"]
for d in sorted(out.glob("recipe-*")):
    if (d / "summary.json").is_file():
        s = json.loads((d / "summary.json").read_text())
        lines.append(f"| {d.name} | {s['test_accuracy_by_strategy']} |")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
