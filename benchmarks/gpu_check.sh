#!/usr/bin/env bash
# The GPU check (issue 12): one command, within 8 minutes on one GPU, no download needed.
#
#   bash benchmarks/gpu_check.sh [OUT.json] [more options of benchmarks/gpu_check.py]
#   bash benchmarks/gpu_check.sh smoke.json --smoke     # the CPU smoke run (tiny model, < 1 min)
#
# SAM 2.1 hiera_t and hiera_l at 1024 px with RANDOM weights (speed and memory do not depend on
# them), fp32 and bf16, without and with vos_optimized (torch.compile): model-only fps, stream
# fps over HTTP through the real service, GPU memory per session, and how many sessions open
# before the service answers BUSY. Prints one markdown table; writes the JSON to OUT.json
# (default gpu-check.json). Details: benchmarks/gpu_check.py and docs/benchmarks.md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-gpu-check.json}"
shift || true
PY="${PYTHON:-$ROOT/.venv/bin/python}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
exec "$PY" "$ROOT/benchmarks/gpu_check.py" --json "$OUT" "$@"
