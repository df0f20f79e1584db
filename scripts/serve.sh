#!/usr/bin/env bash
# Set up .venv, fetch the model if it is missing, and run the service on port 7263.
#
#   bash scripts/serve.sh                      # SAM 2.1 large (SAM2_MATTING_MODEL to change)
#   bash scripts/serve.sh --tiny-random        # a tiny RANDOM-weight model: plumbing only
#   bash scripts/serve.sh --adapter adapters/matting --port 8000   # other options: serve's
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
cli="$VENV/bin/sam2-matting"
if [ "${1:-}" = "--tiny-random" ]; then
    shift
    "$cli" dev make-tiny-model checkpoints/tiny-random
    exec "$cli" serve --config checkpoints/tiny-random/sam2.1_tiny_random.yaml \
        --checkpoint checkpoints/tiny-random/sam2.1_tiny_random.pt "$@"
fi
model=${SAM2_MATTING_MODEL:-large}
"$cli" download "$model" --dir "${SAM2_MATTING_CHECKPOINTS:-checkpoints}"
exec "$cli" serve --model "$model" "$@"
