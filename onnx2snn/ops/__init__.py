"""The op registry (see ``base``); importing this package registers every op."""
from . import elementwise, neurons, pooling, rewritten, shape, synaptic  # noqa: F401  (registration)
from .base import (SNN_DOMAIN, SNN_OPSET, NodeInfo, Op, RewrittenOp, StatefulOp, lookup, register,
                   registered, supported_names)

__all__ = ["SNN_DOMAIN", "SNN_OPSET", "NodeInfo", "Op", "RewrittenOp", "StatefulOp", "lookup",
           "register", "registered", "supported_names"]
