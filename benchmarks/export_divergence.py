"""Where the runtime and onnxruntime (on the unrolled export) part ways, by T: the largest output
difference and the spike-count differences summed over layers, on the first --limit test images.

    OMP_NUM_THREADS=1 python benchmarks/export_divergence.py /tmp/r20.onnx --data ../shared/data/cifar10
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onnx2snn import load_model
from onnx2snn.data import load_split, to_tensor
from onnx2snn.export import export_unrolled
from onnx2snn.runtime import SpikingNetwork


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("snn")
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("-T", default="1,2,4,8,16,32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.snn)
    meta = {p.key: p.value for p in model.metadata_props}
    mean = [float(v) for v in meta["onnx2snn.input_mean"].split(",")]
    std = [float(v) for v in meta["onnx2snn.input_std"].split(",")]
    x = to_tensor(load_split(args.data, "test", limit=args.limit).images, mean, std).numpy()
    network = SpikingNetwork(model)
    for timesteps in (int(t) for t in args.T.split(",")):
        sim = network.simulate(torch.from_numpy(x), timesteps, count_spikes=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(export_unrolled(model, timesteps).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        results = session.run(None, {session.get_inputs()[0].name: x})
        differing = sum(abs(float(a.sum()) - b) for a, b in zip(results[1:], sim.spikes.values()))
        print(f"T={timesteps:<3d} max |output difference| "
              f"{float(np.abs(results[0] - sim.outputs[timesteps].numpy()).max()):.3g}"
              f"   spike-count difference {differing:.0f} of {sum(sim.spikes.values()):.0f} spikes")


if __name__ == "__main__":
    main()
