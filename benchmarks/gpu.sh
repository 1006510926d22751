#!/usr/bin/env bash
# The Glow sweep (python benchmarks/glow.py sweep) on a CUDA GPU: device peak memory and step time,
# invjax vs plain autodiff vs PyTorch normflows, one fresh process per configuration.
#
#   bash benchmarks/gpu.sh                      # sizes 64..2048 at depth 16, depths 4..128 at 256
#   bash benchmarks/gpu.sh --sweep size --sizes 256 512 1024
#   bash benchmarks/gpu.sh --spatial            # one sample split over 1, 2, 4, 8, 16 GPUs (as many as there are)
#   bash benchmarks/gpu.sh --speed              # one convolution and its gradients vs PyTorch (conv_kernels.py),
#                                               # and a Glow step at 256^2 and 512^2: invjax, autodiff, normflows
#   bash benchmarks/gpu.sh --volumes            # a 3D Glow step (glow.py volumes): invjax, autodiff, PyTorch at
#                                               # 32^3..256^3, and the largest cube each fits in 24 GiB
#
# Results: benchmarks/results/gpu/{glow_size.csv,glow_depth.csv,glow_sweep.png,glow_sweep.md}.
# Memory is the device's peak allocation (JAX: memory_stats()["peak_bytes_in_use"],
# PyTorch: torch.cuda.max_memory_allocated()); a configuration that raises an
# out-of-memory error is recorded as such.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[bench]" "jax[cuda12]"
# A CUDA build of the same torch; set TORCH_INDEX for another CUDA version.
python -m pip install -q torch==2.13.0 --index-url "${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
python -m pip install -q normflows
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
# Each process allocates what it needs (no pre-allocation), so the peaks are comparable.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
if [ "${1:-}" = "--spatial" ]; then
  # Compiled per-device memory of a Glow step (8192^2 and 16384^2 2D, 512^3 and 1024^3 3D)
  # with each sample split over the GPUs (one axis; two where the count is a square), and
  # the largest sizes that fit 24 / 40 / 80 GiB per GPU.
  shift
  gpus=$(nvidia-smi --list-gpus | wc -l)
  counts=$(for n in 1 2 4 8 16 64 256; do [ "$n" -le "$gpus" ] && echo -n "$n "; done)
  python benchmarks/spatial_memory.py --platform gpu --devices $counts --results benchmarks/results/gpu "$@"
  exit 0
fi
if [ "${1:-}" = "--speed" ]; then
  # The convolution measurements on the GPU: XLA's convolution is kept there (lax.platform_dependent),
  # so this checks that nothing regressed and how the step compares with PyTorch's.
  mkdir -p benchmarks/results/gpu
  python benchmarks/conv_kernels.py --gpu             # -> benchmarks/results/gpu/conv_kernels.{json,md}
  for size in 256 512; do
    for impl in invjax autodiff normflows; do           # a fresh process each; one JSON line each
      python benchmarks/glow.py step --impl "$impl" --size "$size" --depth 16 --steps 5 \
        | tee -a benchmarks/results/gpu/glow_step_speed.jsonl
    done
  done
  exit 0
fi
if [ "${1:-}" = "--volumes" ]; then
  # The 3D Glow against PyTorch on the GPU; more arguments go to both runs (e.g. --depth 16).
  shift
  python benchmarks/glow.py volumes --gpu --sizes 32 64 128 256 --steps 5 "$@"  # -> benchmarks/results/gpu/glow3d.*
  python benchmarks/glow.py volumes --gpu --largest --limit-gib 24 "$@"         # adds the largest cubes to the same files
  exit 0
fi
python benchmarks/glow.py sweep --results benchmarks/results/gpu \
  --sizes 64 128 256 512 1024 2048 --depth-size 256 --limit-gib 100 "$@"
