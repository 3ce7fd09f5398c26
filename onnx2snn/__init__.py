"""onnx2snn: convert ONNX ANNs into spiking neural networks and run them on PyTorch."""
