#!/usr/bin/env bash
# Create (or update) the virtual environment in .venv with everything sam2-matting needs.
#
#   bash scripts/setup.sh
#
# Order matters: torch first, then SAM 2 with --no-deps (with its dependencies pip would swap
# torch for a CUDA build and add torchvision, which the video path does not need), then this
# project. On a CUDA host set TORCH_SPEC (e.g. "torch==2.5.1") and SAM2_BUILD_CUDA=1.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
echo "setup: torch (${TORCH_SPEC:-torch==2.13.0})"
pip install -q "${TORCH_SPEC:-torch==2.13.0}"
echo "setup: sam2==1.1.0 (no deps, no build isolation, SAM2_BUILD_CUDA=${SAM2_BUILD_CUDA:-0})"
SAM2_BUILD_CUDA=${SAM2_BUILD_CUDA:-0} pip install -q --no-deps --no-build-isolation sam2==1.1.0
echo "setup: sam2-matting and its dependencies (ray: the batch runner on a cluster, ~80 MB)"
# The resolver notice "sam2 requires torchvision" is expected: the video path never imports it.
pip install -q -e ".[dev,ray]" 2>&1 | grep -v "requires torchvision\|dependency resolver\|Location 'file:" || true
"$VENV/bin/python" -c "import sam2, torch, av, sam2_matting; print('setup: ok, torch', torch.__version__)"
