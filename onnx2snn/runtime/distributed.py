"""Data-parallel evaluation and calibration with ``torch.distributed`` (started by ``torchrun``).

Evaluation: each process takes one contiguous shard of the images, counts what it got right, and
the counts are summed across processes at the end, so every process ends with the same result and
rank 0 prints it. Calibration: each process takes a contiguous shard of the calibration batches
(the same batches a single process would form), and every statistic over images is combined with
``max`` or ``gather`` before it is used, so every process makes the same choices. Without
torchrun's environment (``WORLD_SIZE`` unset or 1) everything is a no-op.

    torchrun --nproc_per_node 2 -m onnx2snn evaluate SNN.onnx --data DIR -T 32,64
    torchrun --nproc_per_node 2 -m onnx2snn convert ANN.onnx -o SNN.onnx --data DIR --mean ... --std ...
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node 8 \\
        -m onnx2snn evaluate SNN.onnx --data DIR --device cuda -T 32,64
"""
from __future__ import annotations

import atexit
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

    def max(self, value: float) -> float:
        """The largest ``value`` over all processes (exact: a maximum does not round)."""
        if not self.active:
            return value
        import torch.distributed as dist
        tensor = torch.tensor([value], dtype=torch.float64, device=_wire(dist))
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    def gather(self, piece: torch.Tensor | None, dim: int = 0) -> torch.Tensor:
        """Every process's ``piece`` concatenated along ``dim`` in rank order, on every process. The
        pieces may differ in size along ``dim`` only; a process that has nothing passes None. With
        contiguous shards this is the single-process tensor itself, in the single-process order, so
        order-dependent reductions over it (sums, seeded subsamples) give the same bits."""
        if not self.active:
            return piece
        import torch.distributed as dist
        shapes: list = [None] * self.size
        dist.all_gather_object(shapes, None if piece is None else (tuple(piece.shape), piece.dtype))
        shape, dtype = next(s for s in shapes if s is not None)
        sizes = [0 if s is None else s[0][dim] for s in shapes]
        padded = list(shape)
        padded[dim] = max(sizes)
        wire = torch.zeros(padded, dtype=dtype, device=_wire(dist))
        if piece is not None:
            wire.narrow(dim, 0, sizes[self.rank]).copy_(piece)
        received = [torch.empty_like(wire) for _ in range(self.size)]
        dist.all_gather(received, wire)
        whole = torch.cat([part.narrow(dim, 0, size) for part, size in zip(received, sizes)], dim)
        return whole if piece is None else whole.to(piece.device)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist
            dist.barrier()


SINGLE = World()  # one process: every reduction returns its input


def _wire(dist) -> str:
    """Where tensors travel: this process's GPU for NCCL, else the CPU (gloo)."""
    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"


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
        # left to the interpreter's teardown, gloo's threads sometimes abort the process at exit
        atexit.register(_leave)
    return world


def _leave() -> None:
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()
