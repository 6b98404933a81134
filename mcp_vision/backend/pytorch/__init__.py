"""The PyTorch engine (transformers): engine.PyTorchBackend, and what the OpenVINO engine reuses of it (the family
adapters, the tokenised model inputs, the caches)."""
