#!/usr/bin/env bash
# The GPU training path (issue 12.4), as it was run on the lent H100: corpus + features, then
# `experiment=recipe_gpu` training on CUDA, then dev and test PER with torch on CUDA.
# Usage: bash benchmarks/gpu/train_recipe_gpu.sh WORKDIR [extra overrides]
set -uo pipefail
work=${1:?work dir}; shift
mkdir -p "$work" && cd "$work"
run() { echo "+ python -m lstm_exp $*"; /usr/bin/time -f "wall %e s" python3 -m lstm_exp experiment=recipe_gpu tracking=none progress=false "$@"; }
run stage=prepare "$@"
run stage=train "$@"
run split=dev "$@"
run split=test "$@"
for f in cache/train/*/train_log.jsonl; do echo "== $f"; cat "$f"; done
echo TRAIN_SCRIPT_DONE
