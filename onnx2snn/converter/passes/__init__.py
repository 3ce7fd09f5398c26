"""Normalizing passes: each takes a graphsurgeon graph (and a list of notes) and does one thing.

The order matters and lives in ``normalize.PASSES``. Every pass keeps the graph's numerical
meaning (``tests/test_passes.py`` checks each one against onnxruntime), except
``mark_spiking_sites``, which swaps ReLU for an IF neuron whose analog meaning is that same ReLU,
and ``maxpool_to_average``, which runs only on explicit request.
"""
from .affine import batchnorm_to_affine, fold_affine_into_consumer, fold_affine_into_producer
from .cleanup import drop_default_attributes, drop_identity_and_dropout, drop_output_softmax, fold_constants
from .layout import cancel_transposes, matmul_add_to_gemm, sink_affine_through_transpose
from .pooling import MAXPOOL_MODES, maxpool_to_average
from .shapes import canonical_reshapes, drop_default_inputs, free_batch_dimension, resolve_dynamic_shapes
from .spiking import mark_spiking_sites

__all__ = ["MAXPOOL_MODES", "batchnorm_to_affine", "cancel_transposes", "canonical_reshapes",
           "drop_default_attributes", "drop_default_inputs", "drop_identity_and_dropout", "drop_output_softmax",
           "fold_affine_into_consumer",
           "fold_affine_into_producer", "fold_constants", "free_batch_dimension", "mark_spiking_sites",
           "matmul_add_to_gemm", "maxpool_to_average", "resolve_dynamic_shapes", "sink_affine_through_transpose"]
