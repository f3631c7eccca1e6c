"""The GEMM table: every implementation computes alpha * (a @ b) + init on any layout the
block kernels hand it, and numpy's OpenBLAS is called directly where it can be."""

from __future__ import annotations

import numpy as np
import pytest

from einrel.kernels import blas


def _case(rng: np.random.Generator, batch: int, m: int, k: int, n: int, ta: bool, tb: bool):
    """(B, M, K) and (B, K, N) float32 operands, each a transposed view when asked."""
    a = rng.standard_normal((batch, k, m) if ta else (batch, m, k)).astype(np.float32)
    b = rng.standard_normal((batch, n, k) if tb else (batch, k, n)).astype(np.float32)
    return (a.transpose(0, 2, 1) if ta else a), (b.transpose(0, 2, 1) if tb else b)


def _want(a, b, alpha, init):
    res = alpha * np.matmul(a.astype(np.float64), b.astype(np.float64))
    return res + init if init is not None else res


@pytest.mark.parametrize("name", sorted(blas.GEMMS))
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize(("alpha", "with_init"), [(1.0, False), (-0.25, False), (0.5, True)])
def test_every_gemm_computes_the_scaled_accumulated_product(name, ta, tb, alpha, with_init):
    rng = np.random.default_rng(0)
    for batch, m, k, n in [(1, 70, 90, 50), (3, 64, 128, 48), (1, 1, 300, 40), (2, 40, 300, 1)]:
        a, b = _case(rng, batch, m, k, n, ta, tb)
        init = rng.standard_normal((batch, m, n)).astype(np.float32) if with_init else None
        out = np.full((batch, m, n), np.nan, dtype=np.float32)
        got = blas.GEMMS[name](a, b, out, alpha, init)
        assert got is out
        # float32 accumulation over k terms of unit-variance products
        np.testing.assert_allclose(got, _want(a, b, alpha, init), rtol=0, atol=2e-6 * k)
        if init is not None:  # the accumulator was copied, not overwritten
            assert np.isfinite(init).all()


def test_numpys_openblas_is_called_directly(monkeypatch):
    """The CBLAS symbols are found in numpy's OpenBLAS, and the layouts a transpose flag covers
    never fall back to np.matmul."""
    assert blas._cblas() is not None
    monkeypatch.setattr(blas, "numpy_gemm", lambda *a: pytest.fail("fell back to np.matmul"))
    rng = np.random.default_rng(1)
    for ta in (False, True):
        for tb in (False, True):
            a, b = _case(rng, 2, 64, 64, 64, ta, tb)
            np.testing.assert_allclose(
                blas.openblas_gemm(a, b, None, 2.0, None), _want(a, b, 2.0, None), atol=1e-4
            )


def test_layouts_blas_cannot_read_fall_back_to_numpy(monkeypatch):
    """Neither axis unit-strided, broadcast rows, an output that overlaps an operand and many
    small products all go to np.matmul, and still give the right product."""
    calls = []
    real = blas.numpy_gemm
    monkeypatch.setattr(blas, "numpy_gemm", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(2)
    big = rng.standard_normal((1, 128, 128)).astype(np.float32)
    strided = big[:, ::2, ::2]
    b = rng.standard_normal((1, 64, 64)).astype(np.float32)
    rows = np.broadcast_to(rng.standard_normal((1, 1, 64)).astype(np.float32), (1, 64, 64))
    sq = rng.standard_normal((1, 64, 64)).astype(np.float32)
    small_a, small_b = _case(rng, 64, 8, 8, 8, False, False)
    cases = [(strided, b, None), (rows, b, None), (sq, b, sq), (small_a, small_b, None)]
    for a, bb, out in cases:
        want = _want(a, bb, 1.0, None)
        np.testing.assert_allclose(blas.openblas_gemm(a, bb, out, 1.0, None), want, atol=1e-4)
    assert len(calls) == len(cases)


def test_the_default_is_in_the_table_and_small_or_float64_products_use_numpy(monkeypatch):
    assert blas.default_gemm() in blas.GEMMS
    used = []
    monkeypatch.setitem(blas.GEMMS, "numpy", lambda *a: used.append("numpy") or a[0] @ a[1])
    rng = np.random.default_rng(3)
    a, b = _case(rng, 1, 8, 8, 8, False, False)
    blas.gemm(a, b)
    blas.gemm(a.astype(np.float64), b.astype(np.float64))
    assert used == ["numpy", "numpy"]
