"""Generic PyTorch → TFLite / ONNX conversion, parity checks and graph reports.

Knows nothing of ElasticViT: any ``nn.Module`` plus an example input.

>>> from converters import convert_tflite, check_parity, graph_report
>>> path = convert_tflite(model, (x,), "model.tflite", precision="fp16")
>>> check_parity(model, path, inputs).max_abs_error
>>> print(graph_report(path).summary())
"""

from converters.onnx import ONNX_PRECISIONS, convert_onnx
from converters.parity import Parity, check_parity
from converters.report import GraphReport, graph_report
from converters.tflite import PRECISIONS, ConversionError, convert_tflite

__all__ = ["convert_tflite", "convert_onnx", "check_parity", "graph_report", "Parity",
           "GraphReport", "ConversionError", "PRECISIONS", "ONNX_PRECISIONS"]
