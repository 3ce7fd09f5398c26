"""The threshold methods (entry: ``converter/thresholds.py``; docs/architecture.md has the import order).

``spec`` parses a method's name; ``common`` holds what they share; ``activation``: max and
percentile; ``spikenorm``: SpikeNorm; the low-latency methods (docs/low_latency.md): the
layer-by-layer engine (``layerwise``), candidate evaluation (``candidates``) and the per-layer
choices (``calibrate``), and the optional weight calibration (``weights``, which leaves the fitted
weights in the network's constants). Each returns ``NeuronParameters`` per layer as data.
"""
