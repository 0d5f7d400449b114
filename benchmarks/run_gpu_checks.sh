#!/usr/bin/env bash
# GPU checks in one go (for a machine with CUDA and a torch that sees it): the CUDA
# tests, the CUDA parts of the defence and attack benchmarks (ASMA with the U-Net at
# 128x128 and the FR paper's ResNet-50 FCN at 224x224, batch 32), the attack arithmetic
# (fp32 vs bf16 vs channels-last vs torch.compile, with the agreement against fp32), a
# short bf16 training run on the GPU and (with Ray) the executor with fractional GPUs.
# Writes everything to ${OUT:-gpu-checks}/gpu.log. Each section prints its seconds; the
# whole script stays within ~8 minutes on one H200.
# Usage: bash benchmarks/run_gpu_checks.sh   (from the repository root)
#        TINY=1 bash benchmarks/run_gpu_checks.sh   (CPU dry run of every step, tiny sizes)
set -u
out="${OUT:-gpu-checks}"
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1 SEGSHIELD_PROGRESS=0
py="${PYTHON:-python3}"
if [ "${TINY:-0}" = 1 ]; then
  dev=cpu; batch=2; unet="small 16 2"; fcn="small 16 2"; speed="small 16 2"
  modes="fp32,bf16,bf16-cl"; train_size=16; train_n=8; train_model=small
else
  dev=cuda; batch=32; unet="unet 128 20"; fcn="resnet_fcn 224 10"; speed="resnet_fcn 224 50"
  modes="fp32,bf16,bf16-cl,bf16-cl-compile"; train_size=128; train_n=300; train_model=unet
fi
section() { echo "## $1 (at ${SECONDS}s)"; }
{
  if [ "$dev" = cuda ]; then
    nvidia-smi -L
    "$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
    section "CUDA tests"
    timeout 200 "$py" -m pytest -q -p no:cacheprovider -k cuda tests 2>&1 | tail -n 15
    section "defences"
    timeout 150 "$py" benchmarks/bench_defenses.py --repeats 10
  fi
  for spec in "$unet" "$fcn"; do
    set -- $spec
    section "ASMA, $1 at $2x$2, batch $batch"
    timeout 150 "$py" benchmarks/bench_attacks.py --device "$dev" --batch "$batch" --steps "$3" \
      --size "$2" --model "$1"
  done
  set -- $speed
  section "ASMA arithmetic ($modes), $1 at $2x$2, batch $batch, $3 steps"
  timeout 200 "$py" benchmarks/bench_attacks.py --speed --device "$dev" --batch "$batch" \
    --steps "$3" --size "$2" --model "$1" --modes "$modes"
  section "training on $dev (phantom-derm, 2 epochs, bf16 + channels-last)"
  timeout 120 "$py" -m segshield.cli.main train --data phantom-derm --model "$train_model" \
    --size "$train_size" --n "$train_n" --epochs 2 --device "$dev" -o "$out/derm" \
    --precision bf16 --channels-last 2>&1 | tail -n 12
  if [ "$dev" = cuda ] && "$py" -c "import ray, torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    section "executor: 4 Ray tasks x 0.25 GPU vs one process on the GPU (small grid)"
    timeout 150 "$py" benchmarks/bench_executor.py --device cuda --workers 4 \
      --gpus-per-task 0.25 --samples 32 --steps 100 --batch 8 2>&1 | grep -v "^$" | tail -n 9
  fi
  section "done"
} 2>&1 | tee "$out/gpu.log"
