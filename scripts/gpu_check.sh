#!/usr/bin/env bash
# GPU check (issue 13), meant to run blind on a machine with one CUDA GPU, in under 8 minutes:
#   1. the cuda-marked tests (CPU and CUDA agree),
#   2. the shared ResNet-20: conversion time on the GPU, CPU/GPU agreement of the SNN,
#   3. SNN throughput at T=32 and T=64 for growing batch sizes until memory runs out
#      (float32 and bfloat16). CUDA graphs and torch.compile are not tried: the blocked runtime
#      already issues few, large kernels per block of timesteps.
# Usage: scripts/gpu_check.sh [OUT_DIR]   (figures go to OUT_DIR/gpu_check.json and stdout)
# Environment: PYTHON (default: python3), SHARED (default: ../shared), LIMIT_S (per step, default 200).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_check}
PYTHON=${PYTHON:-python3}
SHARED=${SHARED:-../shared}
LIMIT_S=${LIMIT_S:-200}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== device"
timeout 60 "$PYTHON" - <<'EOF'
import sys, torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device")
print(torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
EOF

echo "== cuda tests (CPU vs CUDA)"
timeout "$LIMIT_S" "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests/test_runtime.py || echo "gpu_check: cuda tests FAILED (rc=$?)"

MODEL="$SHARED/models/resnet20_cifar10.onnx"
DATA="$SHARED/data/cifar10"
if [[ ! -f "$MODEL" || ! -d "$DATA" ]]; then
    echo "gpu_check: $MODEL or $DATA is missing; skipping the ResNet-20 figures"
    exit 0
fi

echo "== conversion on cuda (percentile:99.9, 512 calibration images)"
start=$(date +%s%N)
timeout "$LIMIT_S" "$PYTHON" -m onnx2snn convert "$MODEL" -o "$OUT/resnet20_snn.onnx" --data "$DATA" \
    --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --threshold percentile:99.9 --calib 512 --device cuda
end=$(date +%s%N)
CONVERT_S=$(( (end - start) / 1000000 ))e-3
echo "conversion: ${CONVERT_S} s"

echo "== agreement and throughput"
CONVERT_S=$CONVERT_S OUT=$OUT DATA=$DATA timeout "$LIMIT_S" "$PYTHON" - <<'EOF'
import json, os, time
import torch
from onnx2snn.data import load_split, to_tensor
from onnx2snn.runtime import load

out, data = os.environ["OUT"], os.environ["DATA"]
images = load_split(data, "test", limit=1000)
x = to_tensor(images.images, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
labels = torch.from_numpy(images.labels)
cpu = load(f"{out}/resnet20_snn.onnx").eval()
gpu = load(f"{out}/resnet20_snn.onnx").eval().to("cuda")
report = {"conversion_s": float(os.environ["CONVERT_S"]), "device": torch.cuda.get_device_name(0)}

# agreement: 200 images at T=32 and 64 (the CPU side is the slow part)
sub = x[:200]
a = cpu.simulate(sub, [32, 64], count_spikes=True)
b = gpu.simulate(sub.cuda(), [32, 64], count_spikes=True)
for t in (32, 64):
    report[f"agree_T{t}"] = float((a.outputs[t].argmax(1) == b.outputs[t].cpu().argmax(1)).float().mean())
    report[f"max_abs_diff_T{t}"] = float((a.outputs[t] - b.outputs[t].cpu()).abs().max())
report["spikes_cpu"], report["spikes_gpu"] = sum(a.spikes.values()), sum(b.spikes.values())
print({k: v for k, v in report.items()}, flush=True)

def throughput(net, batch, t):
    xb = x[:batch].cuda() if batch <= len(x) else x.repeat(-(-batch // len(x)), 1, 1, 1)[:batch].cuda()
    net.simulate(xb, t)  # warm-up
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        net.simulate(xb, t)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return batch / best

rows = []
for variant in ("float32", "bfloat16", "bfloat16+fused"):  # +fused: torch.compile's neuron kernel (triton)
    precision = variant.split("+")[0]
    gpu.set_precision(precision).fuse_neurons(variant.endswith("+fused"))
    gpu.block_memory = 4 * 1024**3
    for batch in (100, 250, 500, 1000, 2000, 4000):
        for t in (32, 64):
            try:
                ips = throughput(gpu, batch, t)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                print(f"{variant} batch {batch}: out of memory", flush=True)
                break
            rows.append({"precision": variant, "batch": batch, "T": t, "images_per_s": round(ips, 1)})
            print(rows[-1], flush=True)
gpu.set_precision("float32").fuse_neurons(False)
sim = gpu.simulate(x.cuda(), [32, 64])
for t in (32, 64):
    report[f"accuracy_1000_T{t}"] = float((sim.outputs[t].argmax(1).cpu() == labels).float().mean())
report["throughput"] = rows
with open(f"{out}/gpu_check.json", "w") as f:
    json.dump(report, f, indent=2)
print(json.dumps(report, indent=2))
EOF
echo "gpu_check: done; figures in $OUT/gpu_check.json"
