#!/usr/bin/env bash
# Pack the CIFAR-10 JPEG folders into .gpu_data/cifar10.tgz (~20 MB; git ignores it), so that a
# device machine, which receives only the repository, gets the data: name .gpu_data in the device
# call's carry, and scripts/gpu_train.sh unpacks it there.
#   scripts/pack_data_for_gpu.sh [DATA]      (default ../shared/data/cifar10)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
data="${1:-../shared/data/cifar10}"
if [[ ! -d "$data/train" || ! -d "$data/test" ]]; then
    echo "pack_data_for_gpu.sh: $data has no train/ and test/ folders" >&2; exit 2
fi
mkdir -p .gpu_data
tar czf .gpu_data/cifar10.tgz.partial -C "$(dirname "$data")" --transform "s,^$(basename "$data"),cifar10," \
    "$(basename "$data")/train" "$(basename "$data")/test"
mv .gpu_data/cifar10.tgz.partial .gpu_data/cifar10.tgz
echo "pack_data_for_gpu.sh: wrote .gpu_data/cifar10.tgz ($(du -h .gpu_data/cifar10.tgz | cut -f1))"
