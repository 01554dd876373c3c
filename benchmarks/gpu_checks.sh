#!/usr/bin/env bash
# The GPU checks and benchmarks in one go (a CUDA machine, repository root, drop's dependencies
# installed or on PYTHONPATH): the CUDA tests, the training-step and evaluation benchmarks, and a
# CUDA run of every command on a synthetic set (training with bf16 autocast and channels_last, the
# hrnet_w32 Occluded-Duke recipe, torchrun with NCCL, extraction, evaluation with GPU re-ranking).
#
#     bash benchmarks/gpu_checks.sh [WORK_DIR]        # default: a fresh temporary folder
#
# Every step's output goes to stdout; the summary lines start with "==".
set -uo pipefail  # a failing step is reported and the next one runs
work=${1:-$(mktemp -d)}
drop() { python3 -m drop_cli "$@"; }
step() { echo; echo "== $* ($(date +%T))"; }

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
'timm', timm.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

step "CUDA tests (re-ranking, distances, features, training)"
python3 -m pytest -q -p no:cacheprovider tests/test_rerank.py tests/test_part_distance.py tests/test_features_evaluate.py \
    tests/test_train.py -m "not slow" 2>&1 | tail -5

step "training step, hrnet_w32 256x128 batch 64, bf16 + channels_last"
python3 -m benchmarks.bench_train_step --device cuda --batch 64 --steps 20 --warmup 5 --threads 8

step "the same step under torch.compile (train.compile=default), then with CUDA graphs (reduce-overhead)"
python3 -m benchmarks.bench_train_step --device cuda --batch 64 --steps 20 --warmup 5 --threads 8 --compile default
python3 -m benchmarks.bench_train_step --device cuda --batch 64 --steps 20 --warmup 5 --threads 8 --compile reduce-overhead

step "evaluation on the GPU: re_rank (Market size) and part_distance (Occluded-Duke size) against the CPU"
python3 benchmarks/bench_evaluation.py --only rerank part --device cuda

step "synthetic set and labels"
drop make-synthetic "$work/data" --ids 300 --workers 16 --json | tail -c 300; echo
drop prepare-data synthetic --root "$work/data" --labeler synthetic --workers 16 --json | tail -c 300; echo
common=(--set "data.root=$work/data" --set data.labeler=synthetic --device cuda --json)

step "drop train, synthetic recipe on CUDA (bf16, channels_last)"
time drop train --recipe synthetic --set train.epochs=6 --set data.workers=8 --output "$work/synthetic" "${common[@]}"

step "drop train, occluded_duke recipe (hrnet_w32, 256x128, batch 64) on the synthetic set, 2 epochs"
time drop train --recipe occluded_duke --set data.dataset=synthetic --set model.pretrained=false \
    --set train.epochs=2 --set train.eval_every=1 --output "$work/hrnet" "${common[@]}"

step "torchrun, 1 process, NCCL: 2 epochs of the synthetic recipe"
time torchrun --standalone --nproc_per_node 1 -m drop_cli train --recipe synthetic --set train.epochs=2 \
    --output "$work/ddp" "${common[@]}"

step "drop extract-features on CUDA (hrnet_w32 checkpoint, query + gallery, flip TTA)"
time drop extract-features --checkpoint "$work/hrnet/last.pt" --root "$work/data" --device cuda --flip-tta \
    --out "$work/hrnet/features.h5" --json | tail -c 600; echo

step "drop evaluate with re-ranking and the ablation grid (GPU re-ranking and distances)"
time drop evaluate --features "$work/hrnet/features.h5" --rerank --out "$work/hrnet/eval" --json | tail -c 600; echo
time drop evaluate --features "$work/hrnet/features.h5" --ablate --out "$work/hrnet/ablate" | tail -n 30
