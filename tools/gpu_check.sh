#!/usr/bin/env bash
# The first run on a GPU machine: every package's research-size model for a few bf16 steps with
# sync debug mode "error", NCCL with world size 1, loader vs model throughput, peak memory -> JSON.
# Under 5 minutes on one CUDA GPU. Usage: tools/gpu_check.sh [--device cuda|cpu] [--out FILE] [...]
# Uses the current Python if it has the packages; otherwise builds .venvs/gpu-check (torch from
# tools/torch_base.py, our packages from this repository).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
if ! "$py" -c "import saliency_entropy, gaze_estimation, sparse_video_loss, image_rating" 2>/dev/null; then
    venv="$root/.venvs/gpu-check"
    if [ ! -x "$venv/bin/python" ]; then
        "$py" -m venv "$venv"
        "$venv/bin/python" "$root/tools/torch_base.py" link
        for p in saliency-entropy gaze-estimation sparse-video-loss image-rating; do
            "$venv/bin/python" -m pip install -q "$root/packages/$p"
        done
    fi
    py="$venv/bin/python"
fi
exec "$py" "$root/tools/gpu_check.py" "$@"
