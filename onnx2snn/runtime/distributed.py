"""Data-parallel evaluation with ``torch.distributed`` (started by ``torchrun``).

Each process takes one contiguous shard of the images, counts what it got right, and the counts
are summed across processes at the end, so every process ends with the same result and rank 0
prints it. Without torchrun's environment (``WORLD_SIZE`` unset or 1) everything is a no-op.

    torchrun --nproc_per_node 2 -m onnx2snn evaluate SNN.onnx --data DIR -T 32,64
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node 8 \\
        -m onnx2snn evaluate SNN.onnx --data DIR --device cuda -T 32,64
"""
from __future__ import annotations

import dataclasses
import os

import torch

from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def shard(self, count: int) -> slice:
        """This process's contiguous share of ``count`` items (sizes differ by at most one)."""
        start = self.rank * count // self.size
        return slice(start, (self.rank + 1) * count // self.size)

    def device(self, device: str) -> str:
        """One GPU per process: ``cuda`` becomes ``cuda:LOCAL_RANK``."""
        return f"cuda:{self.local_rank}" if self.active and device == "cuda" else device

    def sum(self, values: list[float], device: str = "cpu") -> list[float]:
        """Element-wise sum over all processes (float64, so counts stay exact)."""
        if not self.active:
            return list(values)
        import torch.distributed as dist
        tensor = torch.tensor(values, dtype=torch.float64,
                              device=device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()


def setup(device: str = "cpu") -> World:
    """Join the process group that torchrun describes (gloo on CPU, NCCL on CUDA)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (as torchrun sets them)") from None
    world = World(rank, size, local_rank)
    if not world.active:
        return world
    import torch.distributed as dist
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed")
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return world
