"""Block kernels: numpy (`dense`, `fused`, `dtypes`) and torch (`torch_dense`) evaluation of
extended einsums and the other block operations, on whole tensors or on blocks alike."""

from .dense import contract2, einsum, fill
from .dtypes import AGG_UFUNC, agg_identity, combine, compute_dtype, finish, storage_dtype

__all__ = [
    "AGG_UFUNC",
    "agg_identity",
    "combine",
    "compute_dtype",
    "contract2",
    "einsum",
    "fill",
    "finish",
    "storage_dtype",
]
