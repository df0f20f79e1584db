#!/usr/bin/env bash
# GPU checks for training and evaluation (issue 5).
#
#   bash benchmarks/gpu_train.sh [OUT_DIR]        # on a CUDA host, from the repository root
#
# *** NOT YET RUN: no GPU was lent to the task that wrote it. Its figures are not in
# *** docs/benchmarks.md yet; run it on a CUDA host and add them.
#
# What it does (about 5-8 minutes on one H100/H200-class GPU, no download needed):
#  1. training throughput and peak CUDA memory, train vs forward-only vs detached memory,
#     for SAM 2.1 Hiera-T and Hiera-L at 1024 px (RANDOM weights: speed does not depend on
#     them), 8-frame clips at 288x512, bf16 autocast (benchmarks/bench_train.py);
#  2. a real `sam2-matting train` run on the CUDA path (bf16 autocast, data-loader workers,
#     checkpoints, resume) with the tiny random model on synthetic data;
#  3. `sam2-matting evaluate` of the resulting adapter against the base on the GPU.
# Every number from the random models is a speed figure or a plumbing check, never a result.
set -euo pipefail

OUT="${1:-gpu-out}"
PY="${PYTHON:-.venv/bin/python}"
VIDEOS="${VIDEOS:-../shared/data/videos}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

echo "== 1. training step vs forward (bench_train.py) =="
for spec in "tiny 1024 2" "large 1024 1"; do
  set -- $spec
  "$PY" benchmarks/bench_train.py --device cuda --model "$1" --image-size "$2" \
      --clips "$3" --frames 8 --size 288x512 --steps 5 --threads 8 --metric-repeat 3 \
      | tee "$OUT/bench_train_$1.txt"
done

echo "== 2. sam2-matting train on CUDA (tiny random model, synthetic data) =="
"$PY" -m sam2_matting dev make-tiny-model "$OUT/tiny" >/dev/null
COMMON=(model=custom "model.config=$OUT/tiny/sam2.1_tiny_random.yaml"
        "model.checkpoint=$OUT/tiny/sam2.1_tiny_random.pt" data=synthetic
        "data.backgrounds.videos=$VIDEOS" data.frames=8 "data.size=[288,512]" data.batch_size=4
        data.workers=4 run.device=cuda "run.out_dir=$OUT/run" run.checkpoint_every=20
        run.log_every=5 optim.lr=1e-3 optim.warmup_steps=5)
"$PY" -m sam2_matting train "${COMMON[@]}" run.steps=40
"$PY" -m sam2_matting train "${COMMON[@]}" run.steps=60 --resume    # continues from step 40
tail -n 5 "$OUT/run/metrics.csv"

echo "== 3. sam2-matting evaluate on CUDA =="
"$PY" -m sam2_matting evaluate --data "$VIDEOS" --layout synthetic --max-clips 8 --max-frames 16 \
    --size 288x512 --model "$OUT/tiny/sam2.1_tiny_random.yaml" \
    --checkpoint "$OUT/tiny/sam2.1_tiny_random.pt" --adapter "$OUT/run/adapter" \
    --device cuda --out "$OUT/eval"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
print({k: (v['model_fps'], v['metric_fps']) for k, v in d['models'].items()})" "$OUT/eval/results.json"
echo "done: figures in $OUT/"
