"""onnxruntime backend (CPU build, or the GPU build from the `gpu` extra)."""
