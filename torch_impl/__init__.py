"""torch_impl: the PyTorch backend. The framework is imported only by its submodules."""
