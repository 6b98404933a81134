#!/usr/bin/env bash
# The GPU path proven on a real GPU, as one short check on a CUDA machine without network access:
# installs what the machine lacks from carried wheels (never from the network), then runs
# python -m bench.gpu (InternVL3-2B's architecture, random weights, NF4 language model, every tool through
# the real server, decode against the bandwidth ceiling, agreement with bf16) and the tests marked `gpu`.
#
# Wheels: on a machine with network, from the repository root (Python 3.12 there; see README "GPU check"):
#   bench/gpu.sh --fetch            # downloads into .whl/ (git-ignored): split in two if over 64 MiB
# On the GPU machine, with .whl carried along:
#   bench/gpu.sh                    # OUT=<dir> puts gpu.json and the logs there
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
PY=${PYTHON:-python3}

if [ "${1:-}" = "--fetch" ]; then
  mkdir -p "$WHEELS"
  # What a CUDA image with torch 2.11 and transformers 5.17 lacks: our pins, and our pure dependencies.
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" \
    transformers==5.24.0 bitsandbytes==0.50.2 mcp==2.3.0 pydantic==2.12.5 pydantic-core==2.41.5 \
    pydantic-settings httpx-sse sse-starlette starlette uvicorn python-multipart jsonschema \
    jsonschema-specifications referencing rpds-py typing-inspection annotated-types pymupdf av
  du -sh "$WHEELS"
  exit 0
fi

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'bench/gpu.sh: no CUDA device')"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYMUPDF_MESSAGE=fd:2 PYTHONUNBUFFERED=1
OUT=${OUT:-.bench-cache}
mkdir -p "$OUT"
"$PY" -c "import transformers, bitsandbytes, mcp; print('transformers', transformers.__version__, 'bitsandbytes', bitsandbytes.__version__, 'mcp', mcp.__version__ if hasattr(mcp, '__version__') else '')"
"$PY" -m bench.gpu --cache "${CACHE:-/tmp/bench-cache}" --out "$OUT/gpu.json"
MCP_VISION_TEST_CUDA=1 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/pytest-gpu.log"
