"""Low-latency conversion methods (docs/low_latency.md): the layer-by-layer calibration engine
(``layerwise``), candidate evaluation (``candidates``) and the per-layer choices (``calibrate``)."""
