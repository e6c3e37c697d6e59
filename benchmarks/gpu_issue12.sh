#!/usr/bin/env bash
# Issue 12 on one GPU, in one short lease: a smoke test of every path on CUDA, then side by side
#   * FF-CNN at the paper's 128 filters, quick protocol (10,000 images x 3 epochs), 14 settings judged on a
#     5,000-image validation split; only the validation winner is tested (pick_and_test.py);
#   * Hinton's recipe on the full training split: the recipe as written ($RECIPE_EPOCHS, default 40 epochs,
#     tested) and 6 variants at $HINTON_EPOCHS (default 20) judged on validation; only their winner is tested;
#   (Hinton in float32, as on the CPU; FF-CNN in bf16 autocast, as on the CPU);
# then training img/s and peak memory (ffvision bench) with the GPU to itself.
#   FFVISION_DATA=.fmnist PYTHON=python3 bash benchmarks/gpu_issue12.sh OUTDIR
# Every process runs on one CPU thread; each phase has a hard time limit so the script ends inside a lease.
# What it writes: OUTDIR/log.txt and OUTDIR/results.tgz (records, metrics.jsonl of every run, logs).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-benchmarks/results/gpu-issue12}
W=${WORK:-/tmp/gpu-issue12}
DEV=${DEVICE:-cuda}
P1=${PHASE1_SECONDS:-300}
EPOCHS_H=${HINTON_EPOCHS:-20}
EPOCHS_R=${RECIPE_EPOCHS:-40}
mkdir -p "$OUT" "$W/logs"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
finish() {
  (cd "$W" && find . -name best.pt -o -name last.pt | xargs -r rm -f; tar czf - .) > "$OUT/results.tgz"
  log "done"
}
trap finish EXIT
SW="$PY benchmarks/sweep_quick.py --device "$DEV" --common num_workers=0"
log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1); $($PY -c 'import torch; print(torch.__version__, torch.cuda.is_available())' 2>&1)"

# ---- smoke: every path this script uses, on tiny data
F16="method=ffcnn model=ffcnn3 filters=16 width_mult=1.0 image_size=28 labels=fourier train_subset=512 epochs=1"
R="method=hinton model=mlp width_mult=1.0 image_size=28 labels=onehot goodness=mean ff_loss=bce goodness_scale=1 \
negatives=hard num_negatives=3 input_norm=true peer_norm=0.01 vote_from=2 vote_to=4 batch_size=100 \
lr=3e-4 weight_decay=0 min_lr_ratio=0.01 warmup_epochs=0 augment=none split_seed=42 strategy=goodness amp=off"
timeout 120 $SW --val-size 256 --runs-dir "$W/smoke" --out "$W/smoke.jsonl" \
  "smoke-ffcnn $F16 num_negatives=3 goodness_scale=16 strategy=goodness" > "$W/logs/smoke-ffcnn.log" 2>&1 &
timeout 120 $SW --val-size 256 --runs-dir "$W/smoke" --out "$W/smoke-h.jsonl" \
  "smoke-hinton $R train_subset=512 epochs=1" > "$W/logs/smoke-hinton.log" 2>&1 &
timeout 120 $PY benchmarks/quick_protocol.py --device "$DEV" --only hinton-recipe-full-fp32 --train-subset 512 --epochs 1 \
  --runs-dir "$W/smoke" --out "$W/smoke-qp.jsonl" > "$W/logs/smoke-qp.log" 2>&1 &
wait
timeout 60 $PY benchmarks/pick_and_test.py --sweep "$W/smoke.jsonl" --prefix smoke- --out "$W/smoke-pick.jsonl" \
  > "$W/logs/smoke-pick.log" 2>&1
for f in smoke.jsonl smoke-h.jsonl smoke-qp.jsonl smoke-pick.jsonl; do
  if [ ! -s "$W/$f" ]; then log "smoke FAILED: $f missing"; tail -n 25 "$W"/logs/smoke-*.log | tee -a "$OUT/log.txt"
    [ "${SMOKE_WARN_ONLY:-0}" = 1 ] || exit 1; fi
done
log "smoke OK"

# ---- phase 1: FF-CNN 128 sweep (GPU-bound) beside the Hinton recipe runs (CPU-bound)
F="method=ffcnn model=ffcnn3 filters=128 width_mult=1.0 image_size=28 strategy=goodness"
ff() { timeout "$P1" $SW --val-size 5000 --runs-dir "$W/ffcnn128" --out "$W/sweep-ffcnn128-$1.jsonl" "${@:2}" \
  > "$W/logs/ffcnn128-$1.log" 2>&1 & }
ff a "ffcnn128-f-k3s16 $F labels=fourier num_negatives=3 goodness_scale=16" \
     "ffcnn128-f-default $F labels=fourier"
ff b "ffcnn128-f-k3s16-lr3e-3 $F labels=fourier num_negatives=3 goodness_scale=16 lr=3e-3" \
     "ffcnn128-f-k3s4 $F labels=fourier num_negatives=3"
ff c "ffcnn128-f-k3s16-lr1e-3 $F labels=fourier num_negatives=3 goodness_scale=16 lr=1e-3" \
     "ffcnn128-f-k3s32 $F labels=fourier num_negatives=3 goodness_scale=32"
ff d "ffcnn128-f-k9s16 $F labels=fourier num_negatives=9 goodness_scale=16" \
     "ffcnn128-f-k3s8-lr3e-3 $F labels=fourier num_negatives=3 goodness_scale=8 lr=3e-3"
ff e "ffcnn128-f-k9s16-lr3e-3 $F labels=fourier num_negatives=9 goodness_scale=16 lr=3e-3" \
     "ffcnn128-f-k3s16-bs64 $F labels=fourier num_negatives=3 goodness_scale=16 batch_size=64"
ff f "ffcnn128-f-ce16-lr3e-3 $F labels=fourier ff_loss=ce goodness_scale=16 lr=3e-3" \
     "ffcnn128-f-k3s16-peer0.01 $F labels=fourier num_negatives=3 goodness_scale=16 peer_norm=0.01"
ff g "ffcnn128-f-k3s16-train1 $F labels=fourier num_negatives=3 goodness_scale=16 train_first_layer=true" \
     "ffcnn128-m-k3s16 $F labels=morphological num_negatives=3 goodness_scale=16"
H="$R train_subset=50000 val_size=10000 epochs=$EPOCHS_H"
hv() { timeout "$P1" $SW --val-size 10000 --runs-dir "$W/hinton" --out "$W/sweep-hinton-$1.jsonl" "$2" \
  > "$W/logs/hinton-$1.log" 2>&1 & }
hv a "hinton-full-recipe $H"
hv b "hinton-full-lr1e-4 $H lr=1e-4"
hv c "hinton-full-lr1e-3 $H lr=1e-3"
hv d "hinton-full-k9-lr1e-4 $H num_negatives=9 lr=1e-4"
hv e "hinton-full-theta0.75 $H threshold=0.75"
hv f "hinton-full-peer0.03 $H peer_norm=0.03"
timeout "$P1" $PY benchmarks/quick_protocol.py --device "$DEV" --only hinton-recipe-full-fp32 --train-subset 50000 \
  --epochs "$EPOCHS_R" --runs-dir "$W/recipe" --out "$W/quick-protocol-gpu.jsonl" > "$W/logs/recipe.log" 2>&1 &
wait
log "phase 1 over: $(cat "$W"/sweep-ffcnn128-*.jsonl 2>/dev/null | wc -l) FF-CNN and $(cat "$W"/sweep-hinton-*.jsonl 2>/dev/null | wc -l) Hinton configs finished"
cat "$W"/sweep-ffcnn128-*.jsonl > "$W/sweep-ffcnn128.jsonl" 2>/dev/null
cat "$W"/sweep-hinton-*.jsonl > "$W/sweep-hinton.jsonl" 2>/dev/null

# ---- phase 2: test only the validation winners
timeout 60 $PY benchmarks/pick_and_test.py --sweep "$W/sweep-ffcnn128.jsonl" --prefix ffcnn128-f- --device "$DEV" \
  --out "$W/picked.jsonl" 2>&1 | tail -n 3 | tee -a "$OUT/log.txt"
timeout 60 $PY benchmarks/pick_and_test.py --sweep "$W/sweep-hinton.jsonl" --prefix hinton-full- --device "$DEV" \
  --out "$W/picked.jsonl" 2>&1 | tail -n 3 | tee -a "$OUT/log.txt"
tail -n 2 "$W/logs/recipe.log" | cut -c1-600 | tee -a "$OUT/log.txt"

# ---- phase 3: training img/s and peak memory with the GPU to itself
timeout 50 $PY -m ffvision bench --device "$DEV" --method ffcnn --model ffcnn3 --image-size 28 --compare bp \
  --steps 20 --warmup 5 --json "$W/bench-ffcnn3-cuda.json" > "$W/logs/bench-ffcnn.log" 2>&1
timeout 50 $PY -m ffvision bench --device "$DEV" --method asge --model vgg8 --width-mult 1 --compare bp \
  --steps 20 --warmup 5 --json "$W/bench-asge-vgg8-cuda.json" > "$W/logs/bench-asge.log" 2>&1
tail -n 6 "$W"/logs/bench-*.log | tee -a "$OUT/log.txt"
