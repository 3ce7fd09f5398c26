"""The op registry (see ``base``); importing this package registers every op."""
from . import elementwise, neurons, pooling, rewritten, shape, synaptic  # noqa: F401  (registration)
from .base import NodeInfo, Op, RewrittenOp, StatefulOp, WeightLayout, lookup, register, registered, supported_names

__all__ = ["NodeInfo", "Op", "RewrittenOp", "StatefulOp", "WeightLayout", "lookup", "register", "registered",
           "supported_names"]
