"""onnx2snn: convert ONNX ANNs into spiking neural networks and run them on PyTorch.

    from onnx2snn import convert, load, evaluate
"""
__version__ = "0.1.0"
