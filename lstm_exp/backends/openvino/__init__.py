"""OpenVINO backend (``openvino`` from PyPI, in the ``cpu`` extra): the ONNX export on OpenVINO's CPU plugin."""
