"""models: PyTorch recommenders and federated training on the secure backends."""
