#!/usr/bin/env bash
# Issue 8's GPU check in one command: bash benchmarks/gpu_check.sh [--cpu] [gpu_check.py options]
#
# On one H100/H200 it runs every GPU-specific measurement in about 5-7 minutes and ends with
# SUMMARY lines (see benchmarks/gpu_check.py). --cpu runs the same code paths at tiny sizes on
# CPU; CI runs that (tests/test_benchmarks.py) so the script cannot rot between GPU runs.
#
# The GPU machine has no network and no Ray/Optuna/Plotly: the check needs only torch,
# torchvision, timm, numpy, pandas, pyarrow and pillow. Anything more must travel as wheels in
# benchmarks/wheels/, which are installed from there (never from an index) when present.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
# the GPU machine's Python with torch is python3; there may be no plain `python`
python="${PYTHON:-$(command -v python || command -v python3)}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if compgen -G "$here/wheels/*.whl" >/dev/null; then
    "$python" -m pip install --quiet --no-index --find-links "$here/wheels" "$here"/wheels/*.whl
fi

# the 8-minute target plus margin; SIGINT makes the check print what it measured
limit="${GPU_CHECK_LIMIT_S:-540}"
for arg in "$@"; do
    if [[ "$arg" == "--cpu" ]]; then limit="${GPU_CHECK_LIMIT_S:-240}"; fi
done
exec timeout --signal=INT --kill-after=30 "$limit" "$python" "$here/gpu_check.py" "$@"
