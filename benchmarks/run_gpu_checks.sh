#!/usr/bin/env bash
# GPU checks in one go (for a machine with CUDA and a torch that sees it): the CUDA
# tests, the CUDA parts of the defence and attack benchmarks (ASMA with the U-Net at
# 128x128 and the FR paper's ResNet-50 FCN at 224x224, batch 32), and a short bf16
# training run on the GPU, and (with Ray) the executor with fractional GPUs. Writes
# everything to ${OUT:-gpu-checks}/gpu.log.
# Usage: bash benchmarks/run_gpu_checks.sh   (from the repository root)
set -u
out="${OUT:-gpu-checks}"
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1 SEGSHIELD_PROGRESS=0
py="${PYTHON:-python3}"
{
  nvidia-smi -L
  "$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  echo "## CUDA tests"
  timeout 200 "$py" -m pytest -q -p no:cacheprovider -k cuda tests 2>&1 | tail -n 15
  echo "## defences"
  timeout 150 "$py" benchmarks/bench_defenses.py --repeats 10
  for spec in "unet 128 20" "resnet_fcn 224 10"; do
    set -- $spec
    echo "## ASMA, $1 at $2x$2, batch 32"
    timeout 150 "$py" benchmarks/bench_attacks.py --device cuda --batch 32 --steps "$3" \
      --size "$2" --model "$1"
  done
  echo "## training on the GPU (phantom-derm, 2 epochs, bf16 + channels-last)"
  timeout 120 "$py" -m segshield.cli.main train --data phantom-derm --model unet --size 128 \
    --n 300 --epochs 2 --device cuda -o "$out/derm" --precision bf16 --channels-last 2>&1 |
    tail -n 12
  if "$py" -c "import ray, torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    echo "## executor: 4 Ray tasks x 0.25 GPU vs one process on the GPU (small grid)"
    timeout 300 "$py" benchmarks/bench_executor.py --device cuda --workers 4 \
      --gpus-per-task 0.25 --samples 64 --steps 100 --batch 8 2>&1 | grep -v "^$" | tail -n 9
  fi
} 2>&1 | tee "$out/gpu.log"
