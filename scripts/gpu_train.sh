#!/usr/bin/env bash
# Train the reference VGG16 and VGG5 on CIFAR-10 (JPEG train split) on one CUDA GPU, inside a
# wall-time budget, then write each model's ONNX file (fp16 weights + Cast, opset 13, dynamic batch,
# input mean/std and width multiplier in its metadata) and its JSON record.
#
#   scripts/gpu_train.sh OUT_DIR [MODEL...]        (models: vgg16 vgg5, in that order by default)
#
# Environment (all optional):
#   BUDGET=420        seconds of wall time for this whole invocation (a device call allows 8 minutes)
#   RESERVE=45        seconds kept back per model for the test-split accuracy and the ONNX export
#   EPOCHS_vgg16, EPOCHS_vgg5   fixed schedule lengths; unset: the most epochs that fit (see below),
#                     at most MAX_EPOCHS_<model> (default 60 for vgg16, 60 for vgg5)
#   WIDTH_MULT=1      width multiplier of both models (1 = the paper's widths)
#   COMPILE=0         1: torch.compile the training model (slower start, maybe faster steps)
#   DATA              CIFAR-10 folder with train/ and test/ class folders; default: shared/data/cifar10,
#                     ../shared/data/cifar10, or the archive .gpu_data/cifar10.tgz (made by
#                     scripts/pack_data_for_gpu.sh) unpacked to $TMPDIR
#   CKPT_DIR=runs/gpu_checkpoints   where checkpoints live (ignored by git; on a device machine that
#                     stays warm, a rerun finds them there and resumes)
#   PYTHON=python3
#   DEVICE=cuda       DEVICE=cpu runs the same path on the CPU (no bf16), for testing this script
#   EXTRA=""          more flags for examples/train.py (tests: "--limit 20 --batch-size 10")
#
# Each model is resumable: a rerun with the same OUT_DIR and CKPT_DIR continues the same one-cycle
# schedule (the chosen epoch count is kept in OUT_DIR/<model>/epochs). A model whose train.json says
# "finished" is skipped. When no epoch count is given, a probe times 20 steps and the schedule is set
# to the most epochs that fit in what is left of the budget (85% of it), so that a model finishes
# within one call. Exits 0 with one line when there is no CUDA device.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
started=$(date +%s)
if [[ $# -lt 1 ]]; then
    echo "usage: scripts/gpu_train.sh OUT_DIR [vgg16] [vgg5]" >&2
    exit 2
fi
out="$1"; shift
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(vgg16 vgg5)
BUDGET="${BUDGET:-420}"
RESERVE="${RESERVE:-45}"
WIDTH_MULT="${WIDTH_MULT:-1}"
COMPILE="${COMPILE:-0}"
CKPT_DIR="${CKPT_DIR:-runs/gpu_checkpoints}"
PYTHON="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
read -r -a extra <<< "${EXTRA:-}"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

say() { echo "gpu_train.sh: $*"; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    say "no Python interpreter '$PYTHON' (set PYTHON)"; exit 2
fi
if ! "$PYTHON" -c "import torch, onnx, numpy, PIL, tqdm" 2>/dev/null; then
    say "$PYTHON lacks one of torch, onnx, numpy, pillow, tqdm; nothing done"; exit 2
fi
if [[ "$DEVICE" == cuda ]] && ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    say "no CUDA device here; nothing done (the CPU path is in docs/reference_experiments.md)"
    exit 0
fi

# ---- data
find_data() {
    local candidate
    for candidate in "${DATA:-}" shared/data/cifar10 ../shared/data/cifar10; do
        if [[ -n "$candidate" && -d "$candidate/train" && -d "$candidate/test" ]]; then
            echo "$candidate"; return 0
        fi
    done
    if [[ -f .gpu_data/cifar10.tgz ]]; then
        local target="${TMPDIR:-/tmp}/onnx2snn_data"
        if [[ ! -d "$target/cifar10/train" ]]; then
            mkdir -p "$target.partial"
            tar xzf .gpu_data/cifar10.tgz -C "$target.partial"
            rm -rf "$target"; mv "$target.partial" "$target"
        fi
        echo "$target/cifar10"; return 0
    fi
    return 1
}
if ! data="$(find_data)"; then
    say "no CIFAR-10 folder (set DATA, or run scripts/pack_data_for_gpu.sh and carry .gpu_data)"; exit 2
fi
say "data $data; budget ${BUDGET} s; models ${models[*]}; width_mult $WIDTH_MULT; $("$PYTHON" -c \
    'import sys, torch; print(torch.cuda.get_device_name(0) if sys.argv[1] == "cuda" else "cpu", "torch", torch.__version__)' "$DEVICE")"

default_max() { case "$1" in vgg16) echo 60 ;; vgg5) echo 60 ;; *) echo 30 ;; esac; }
flags=(--device "$DEVICE" --gpu-resident --channels-last --fp16-onnx --threads 4 --batch-size 256
       --width-mult "$WIDTH_MULT")
[[ "$DEVICE" == cuda ]] && flags+=(--amp bf16)
flags+=("${extra[@]}")
[[ "$COMPILE" == 1 ]] && flags+=(--compile)

for model in "${models[@]}"; do
    case "$model" in vgg16|vgg5) ;; *) say "unknown model '$model' (vgg16, vgg5)"; exit 2 ;; esac
    dir="$out/$model"
    mkdir -p "$dir" "$CKPT_DIR/$model"
    if [[ -f "$dir/train.json" ]] && grep -q '"finished": true' "$dir/train.json"; then
        say "$model: finished earlier ($dir/train.json); skipped"; continue
    fi
    left=$(( BUDGET - ($(date +%s) - started) ))
    if (( left < RESERVE + 60 )); then
        say "$model: only ${left} s of the budget left; rerun to continue"; continue
    fi
    var="EPOCHS_$model"
    if [[ -n "${!var:-}" ]]; then
        epochs="${!var}"
    elif [[ -f "$dir/epochs" && -f "$CKPT_DIR/$model/checkpoint.pt" ]]; then
        epochs="$(cat "$dir/epochs")"   # resuming: the schedule must stay the one it was started with
    else
        max_var="MAX_EPOCHS_$model"
        max="${!max_var:-$(default_max "$model")}"
        probe_json="$("$PYTHON" examples/train.py "$model" --data "$data" --out "$dir" "${flags[@]}" --probe 20 \
                      | tail -n 1)"
        left=$(( BUDGET - ($(date +%s) - started) ))
        epochs="$("$PYTHON" -c "
import json, sys
p = json.loads(sys.argv[1]); left, reserve, cap = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
epoch_s = p['seconds_per_step'] * p['steps_per_epoch']
print(max(1, min(cap, int(0.85 * (left - reserve - 20) / epoch_s))))
print(f'probe: {epoch_s:.1f} s per epoch', file=sys.stderr)" "$probe_json" "$left" "$RESERVE" "$max")"
    fi
    echo "$epochs" > "$dir/epochs"
    left=$(( BUDGET - ($(date +%s) - started) ))
    say "$model: $epochs epochs, ${left} s of the budget left"
    set +e
    "$PYTHON" examples/train.py "$model" --data "$data" --out "$dir" --epochs "$epochs" "${flags[@]}" \
        --checkpoint "$CKPT_DIR/$model/checkpoint.pt" --time-budget $(( left - RESERVE )) 2>&1 \
        | tee -a "$dir/train.log"
    status=${PIPESTATUS[0]}
    set -e
    if (( status != 0 )); then say "$model: training failed (exit $status); see $dir/train.log"; exit "$status"; fi
    # The converter must read what was written: load it with onnx2snn and check its accuracy agrees.
    "$PYTHON" - "$dir" "$model" "$data" <<'EOF' 2>&1 | tee -a "$dir/train.log"
import json, sys
from pathlib import Path
import numpy as np
from onnx2snn import ann_predictions, load_split, to_tensor
from onnx2snn.dialect import load_model
folder, model, data = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
path = folder / f"{model}.onnx"
load_model(path)
record = json.loads((folder / "train.json").read_text())
test = load_split(data, "test", limit=1000)
x = to_tensor(test.images, record["input_mean"], record["input_std"]).numpy()
record["onnx_check"] = {"images": len(x), "accuracy_onnxruntime": float((ann_predictions(path, x) == test.labels).mean())}
(folder / "train.json").write_text(json.dumps(record, indent=2) + "\n")
print(f"{path}: loads in onnx2snn; onnxruntime accuracy on {len(x)} test images "
      f"{100 * record['onnx_check']['accuracy_onnxruntime']:.2f}%; finished={record['finished']}")
EOF
done
say "done in $(( $(date +%s) - started )) s; outputs in $out"
