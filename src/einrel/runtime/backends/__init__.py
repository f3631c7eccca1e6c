"""Arena backends of the memory engine: numpy buffers (`numpy_arenas`) and torch tensors on
CUDA or CPU (`torch_arenas`)."""
