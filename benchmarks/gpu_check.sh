#!/usr/bin/env bash
# The CUDA path on a machine with a GPU and no network (docs/engine.md, "CUDA"): conformance in
# float32 and bfloat16, compile=True, flash attention, batch-1 and batch-8 real-time factors and
# the first chunk's latency under load (benchmarks/gpu_check.py).
#
# Such a machine has Python, PyTorch (with CUDA), transformers, safetensors, onnxruntime, but not
# this project's smaller dependencies. Download them as wheels beforehand, into .whl/ of the
# repository (ignored by git), for the machine's Python (3.12 on ours):
#
#   for p in vocos==0.1.0 'vector-quantize-pytorch==1.32.*' einx 'pybase16384>=0.3.7' 'av==18.1.*' \
#            'pyloudnorm==0.2.*' 'soxr==1.1.*' 'webvtt-py==0.6.*' 'defusedxml==0.7.*' \
#            encodec 'huggingface_hub==2.4.*'; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl "$p"
#   done
#
# then run this script there (it installs them into /tmp/site, never into the system).
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-$(mktemp -d)}"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))"
python3 benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
echo "figures: $OUT/gpu_check.json"
