"""The OpenVINO engine for CPUs: convert.py (openvino.convert_model + NNCF, in a child process) and engine.OpenVINOBackend."""
