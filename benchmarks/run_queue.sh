#!/usr/bin/env bash
# The CPU benchmark queue behind docs/results.md, run in this order on an otherwise idle machine
# (throughput and memory first: they must not share the CPU with anything else).
set -u
cd "$(dirname "$0")/.."
R=benchmarks/results
mkdir -p $R
B=.venv/bin/ffvision
for bs in 32 128 512; do
  $B bench --method asge --model vgg8 --width-mult 0.25 --batch-size $bs --compare bp --device cpu \
    --steps 5 --warmup 2 --json $R/bench-asge-vgg8-w0.25-b$bs-cpu.json
done
$B bench --method asge --model vgg8 --batch-size 128 --compare bp --device cpu --steps 2 --warmup 1 \
  --json $R/bench-asge-vgg8-w1-b128-cpu.json
for m in resnet18 mobilenet_v3_small; do
  $B bench --method sff --model $m --batch-size 128 --compare bp --device cpu --steps 3 --warmup 1 \
    --json $R/bench-sff-$m-b128-cpu.json
done
.venv/bin/python benchmarks/inference_ff.py --json $R/inference-ffcnn-cpu.json
Q=".venv/bin/python benchmarks/quick_protocol.py --out $R/quick_protocol.jsonl --only"
$Q hinton bp-mlp ffcnn-fourier ffcnn-morphological bp-ffcnn3
$Q sff-mobilenet_v3_small-block bp-mobilenet_v3_small sff-resnet18-block bp-resnet18
$Q sff-resnet18-layer sff-resnet18-stage
S=".venv/bin/python benchmarks/quick_protocol.py --out $R/small_data.jsonl"
$S --train-subset 1000 --epochs 10 --only sff-resnet18-block bp-resnet18
$S --train-subset 5000 --epochs 4 --only sff-resnet18-block bp-resnet18
echo QUEUE DONE
