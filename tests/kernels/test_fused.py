"""The fused elementwise kernel writes into strided windows (column blocks of an output)
as it writes into fresh arrays: every step on strided inputs and outputs alike."""

from __future__ import annotations

import numpy as np
import pytest

import einrel as er
from einrel.kernels.dense import einsum as dense_einsum


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [2, 7, 64])
def test_joins_into_strided_windows_of_strided_blocks(dtype: str, rows: int) -> None:
    """numpy 2.4's negative loop read the wrong elements with both sides at a stride of 4
    float32s; a column block of a (rows, 4) table, written into a window of a (rows, 4)
    output, is exactly that."""
    x = er.input("x", (rows, 1), dtype)
    for expr in (-x, er.einsum("ab->ab", x, join=lambda v: er.exp(-v) * 2.0)):
        op = expr.node.attrs  # the one einsum of the join
        table = np.random.default_rng(rows).standard_normal((rows, 4)).astype(dtype)
        out = np.full((rows, 4), np.nan, dtype)
        got = dense_einsum(op, [table[:, 2:3]], {}, dtype, out[:, 1:2])
        want = er.evaluate(expr, {"x": np.ascontiguousarray(table[:, 2:3])})
        assert got.base is out
        np.testing.assert_array_equal(out[:, 1:2], want)
        assert np.isnan(out[:, [0, 2, 3]]).all()  # nothing written outside the window
