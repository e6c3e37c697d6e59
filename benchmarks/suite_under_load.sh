#!/usr/bin/env bash
# The test suite N times in a row from a clean clone of HEAD, with a CPU-heavy job beside it (a 1-thread
# matrix-multiply loop): a test that depends on an idle machine fails here. Prints one line per run and a
# summary; exits non-zero at the first failure (its log is kept).
#   bash benchmarks/suite_under_load.sh 10
set -u
N=${1:-10}
REPO=$(git rev-parse --show-toplevel)
WORK=$(mktemp -d /tmp/ffvision-suite.XXXXXX)
git clone -q "$REPO" "$WORK/clone"
cd "$WORK/clone"
make -s install >/dev/null
OMP_NUM_THREADS=1 .venv/bin/python -c "
import torch
a = torch.rand(1024, 1024)
while True:
    a = (a @ a).clamp_(-1, 1)
" &
LOAD=$!
trap 'kill $LOAD 2>/dev/null' EXIT
echo "commit $(git rev-parse --short HEAD), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load: 1-thread matmul loop"
for i in $(seq 1 "$N"); do
  start=$(date +%s)
  if .venv/bin/python -m pytest -q -p no:cacheprovider > "$WORK/run$i.log" 2>&1; then
    echo "run $i/$N: $(tail -1 "$WORK/run$i.log") ($(( $(date +%s) - start )) s)"
  else
    echo "run $i/$N FAILED ($(( $(date +%s) - start )) s): $(grep -m3 '^FAILED' "$WORK/run$i.log")"
    echo "log: $WORK/run$i.log"
    exit 1
  fi
done
echo "$N of $N runs passed"
