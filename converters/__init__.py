"""Generic PyTorch -> TFLite / ONNX conversion and parity checks (knows nothing of ElasticViT)."""
