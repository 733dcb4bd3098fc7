#!/usr/bin/env bash
# On a GPU machine: build miakit with its CUDA kernels, run the CUDA tests and every
# benchmark that takes --device, and collect the results.
#
#   bash bench/run_gpu.sh            # from the repository root
#
# Environment (all optional):
#   OUT          directory that receives log.txt, pytest-cuda.xml and bench/results/*.json
#   PYTHON       interpreter with numpy, scipy, torch (CUDA), pytest, scikit-build-core,
#                pybind11 and cmake already installed; default python3. Nothing is
#                downloaded: the build uses --no-build-isolation --no-deps.
#   MIAKIT_SITE  an install directory built elsewhere (pip install --target ...): skip
#                the build and test that one
#   CUDA_ARCHS   architectures to compile for, e.g. "90" (default: CMakeLists.txt's "80;90")
#   SKIP_TESTS=1, SKIP_BENCH=1, BENCH_ARGS="--quick"   select and tune the steps
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-python3}

if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  exec > >(tee -a "$OUT/log.txt") 2>&1
fi

echo "== machine"
date -u
nvidia-smi || echo "nvidia-smi not found"
nvcc --version 2>/dev/null | tail -n 2 || echo "nvcc not found"
"$py" - <<'PY' || true
import torch
print("torch", torch.__version__, "built for CUDA", torch.version.cuda,
      "| cuda available:", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no device")
PY

site=${MIAKIT_SITE:-}
if [[ -z "$site" ]]; then
  echo "== build (MIAKIT_CUDA=ON)"
  site=$root/build/gpu-site
  rm -rf "$site"
  build_args=(-C "build-dir=$root/build/gpu-build")
  if [[ -n "${CUDA_ARCHS:-}" ]]; then
    build_args+=(-C "cmake.define.MIAKIT_CUDA_ARCHITECTURES=$CUDA_ARCHS")
  fi
  t0=$(date +%s)
  MIAKIT_CUDA=ON "$py" -m pip install --no-build-isolation --no-deps -q "${build_args[@]}" \
    --target "$site" .
  echo "built in $(( $(date +%s) - t0 )) s"
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
"$py" -c "import json, miakit; print('miakit from', miakit.__file__); \
print(json.dumps(miakit.backend_info()))"
if ! "$py" -c "import miakit, sys; sys.exit(0 if miakit.backend_info()['cuda_available'] else 1)"
then
  echo "miakit sees no usable CUDA device (a driver older than the CUDA runtime it was" \
       "built with also shows up this way); stopping" >&2
  exit 1
fi

status=0
if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
  echo "== pytest -m cuda"
  junit=()
  if [[ -n "${OUT:-}" ]]; then junit=(--junitxml "$OUT/pytest-cuda.xml"); fi
  "$py" -m pytest -m cuda -q -p no:cacheprovider ${junit[@]+"${junit[@]}"} tests || status=$?
fi

if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
  read -r -a extra <<< "${BENCH_ARGS:-}"
  for bench in bench/bench_*.py; do
    [[ -e "$bench" ]] || continue
    if ! grep -q -- "--device" "$bench"; then
      echo "== $bench: no --device option, skipped"
      continue
    fi
    echo "== $bench --device cuda ${BENCH_ARGS:-}"
    "$py" "$bench" --device cuda ${extra[@]+"${extra[@]}"} || status=$?
  done
  if [[ -z "${BENCH_ARGS:-}" ]]; then
    # the larger GPU workload of train_heads: 256 heads on 50,000 x 768 features
    # (baselines timed on 8 heads, scaled to 256)
    echo "== bench/bench_train_heads.py --device cuda --models 256 --examples 50000 --dim 768"
    "$py" bench/bench_train_heads.py --device cuda --models 256 --examples 50000 --dim 768 \
      --baseline-heads 8 || status=$?
    # the sweep on the GPU: the default shots/classes grid with 256 heads per cell
    echo "== miakit sweep --device cuda --models 256"
    t0=$(date +%s)
    "$py" -m miakit sweep --device cuda --models 256 --out "${OUT:-build}/sweep-gpu" --quiet \
      || status=$?
    echo "sweep took $(( $(date +%s) - t0 )) s"
  fi
fi

if [[ -n "${OUT:-}" ]]; then
  cp bench/results/*.json "$OUT/" 2>/dev/null || true
fi
echo "== done (status $status)"
exit "$status"
