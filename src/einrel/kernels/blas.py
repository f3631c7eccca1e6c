"""Batched GEMMs with a scale and an accumulator: `alpha * (a @ b) + init` in one BLAS call.

Three implementations behind one signature, in a table (`GEMMS`): numpy's own OpenBLAS called
through its CBLAS symbol (alpha and beta as BLAS has them, on strided views, no copies), torch
(MKL on x86), and plain `np.matmul` plus in-place passes. `default_gemm()` picks per machine:
torch's MKL on Intel CPUs, where it beats OpenBLAS a little, and OpenBLAS everywhere else (MKL
runs far below peak on other vendors' CPUs: about 95 against 210 GFLOP/s on one AMD EPYC core
for a device's GEMM block, benchmarks/kernels.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

Gemm = Callable[
    [np.ndarray, np.ndarray, "np.ndarray | None", float, "np.ndarray | None"], np.ndarray
]
GemmName = Literal["openblas", "torch", "numpy"]

GEMM_MIN = 1 << 18  # m·k·n of a whole product below which numpy's matmul is as fast
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def numpy_gemm(
    am: np.ndarray,
    bm: np.ndarray,
    out: np.ndarray | None = None,
    alpha: float = 1.0,
    init3: np.ndarray | None = None,
) -> np.ndarray:
    """np.matmul, then alpha and init3 applied in place (two more passes when they are set)."""
    return finish3(np.matmul(am, bm, out=out), alpha, init3)


def finish3(res: np.ndarray, alpha: float, init3: np.ndarray | None) -> np.ndarray:
    """alpha * res + init3, in place (res is a fresh product or the caller's output)."""
    if alpha != 1:
        res = np.multiply(res, res.dtype.type(alpha), out=res)
    if init3 is not None:
        res = np.add(res, init3, out=res)
    return res


@functools.cache
def _openblas() -> Any:
    """numpy's OpenBLAS as a threadpoolctl controller, or None when numpy uses another BLAS."""
    from threadpoolctl import ThreadpoolController

    libs = ThreadpoolController().select(internal_api="openblas").lib_controllers
    mine = [c for c in libs if Path(np.__file__).parent.parent in Path(c.filepath).parents]
    return (mine or libs or [None])[0]


@functools.cache
def _cblas() -> dict[np.dtype, Any] | None:
    """cblas_sgemm and cblas_dgemm from numpy's OpenBLAS with their argument types (64-bit
    integers in an ILP64 build), or None when they cannot be found."""
    ctl = _openblas()
    if ctl is None:
        return None
    lib = ctypes.CDLL(ctl.filepath)  # ctypes releases the GIL around each call
    for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
        try:
            fns = {t: getattr(lib, f"{prefix}cblas_{t}gemm{suffix}") for t in "sd"}
            config = getattr(lib, f"{prefix}openblas_get_config{suffix}")
        except AttributeError:
            continue
        config.restype = ctypes.c_char_p
        blasint = ctypes.c_int64 if b"USE64BITINT" in config() else ctypes.c_int
        table = {}
        for t, scalar in (("s", ctypes.c_float), ("d", ctypes.c_double)):
            fn = fns[t]
            enum, ptr = ctypes.c_int, ctypes.c_void_p
            fn.argtypes = [enum, enum, enum, blasint, blasint, blasint, scalar, ptr, blasint]
            fn.argtypes += [ptr, blasint, scalar, ptr, blasint]
            fn.restype = None
            table[np.dtype(np.float32 if t == "s" else np.float64)] = fn
        return table
    return None


def _operand(x: np.ndarray) -> tuple[int, int] | None:
    """(transpose flag, leading dimension) describing the 2-D matrix x[i] as CBLAS reads it in
    row-major order, or None when neither of its axes is unit-strided."""
    rows, cols = x.shape[1:]
    sr, sc = (s // x.itemsize for s in x.strides[1:])
    if sc == 1 or cols == 1:
        ld = sr if rows > 1 else cols
        return (_NO_TRANS, ld) if ld >= max(1, cols) else None
    if sr == 1 or rows == 1:
        ld = sc if cols > 1 else rows
        return (_TRANS, ld) if ld >= max(1, rows) else None
    return None


def _output(am: np.ndarray, bm: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    return out if out is not None else np.empty(am.shape[:2] + bm.shape[2:], dtype=am.dtype)


def _accumulate_into(out: np.ndarray, init3: np.ndarray | None) -> None:
    """Start a beta = 1 GEMM from init3 (nothing to do when init3 is `out` itself)."""
    if init3 is not None and init3 is not out:
        np.copyto(out, init3)


def openblas_gemm(
    am: np.ndarray,
    bm: np.ndarray,
    out: np.ndarray | None = None,
    alpha: float = 1.0,
    init3: np.ndarray | None = None,
) -> np.ndarray:
    """One CBLAS GEMM per batch entry: beta = 1 accumulates into a copy of init3 in `out`,
    alpha scales the product; operands are read through their strides (a transposed view
    is a transpose flag, not a copy)."""
    table = _cblas()
    fn = table.get(am.dtype) if table is not None and am.dtype == bm.dtype else None
    out = _output(am, bm, out)
    batch, m, k = am.shape
    n = bm.shape[2]
    ta, tb, to = _operand(am), _operand(bm), _operand(out)
    if batch > 1 and m * k * n < GEMM_MIN // 8:  # many small products: numpy loops in C
        fn = None
    if np.may_share_memory(out, am) or np.may_share_memory(out, bm):  # BLAS assumes no overlap
        fn = None
    if fn is None or ta is None or tb is None or to is None or to[0] != _NO_TRANS:
        return numpy_gemm(am, bm, out, alpha, init3)
    _accumulate_into(out, init3)
    pa, pb, po = (x.ctypes.data for x in (am, bm, out))
    sa, sb, so = (x.strides[0] for x in (am, bm, out))
    beta = 0.0 if init3 is None else 1.0
    for i in range(batch):
        fn(_ROW_MAJOR, ta[0], tb[0], m, n, k, alpha, pa + i * sa, ta[1], pb + i * sb, tb[1],
           beta, po + i * so, to[1])  # fmt: skip
    return out


def torch_gemm(
    am: np.ndarray,
    bm: np.ndarray,
    out: np.ndarray | None = None,
    alpha: float = 1.0,
    init3: np.ndarray | None = None,
) -> np.ndarray:
    """torch.baddbmm on zero-copy views, accumulating into a copy of init3 (beta = 1), with
    the thread count of `torch_threads`."""
    import torch

    if not (am.flags.writeable and bm.flags.writeable):  # torch wants writable memory
        return numpy_gemm(am, bm, out, alpha, init3)
    out = _output(am, bm, out)
    _accumulate_into(out, init3)
    with torch_threads():
        a_t, b_t, o_t = torch.from_numpy(am), torch.from_numpy(bm), torch.from_numpy(out)
        if init3 is not None:
            o_t.baddbmm_(a_t, b_t, alpha=alpha)
        elif alpha != 1:  # beta 0: whatever `out` held is ignored
            torch.baddbmm(o_t, a_t, b_t, beta=0, alpha=alpha, out=o_t)
        else:
            torch.matmul(a_t, b_t, out=o_t)
    return out


@contextlib.contextmanager
def torch_threads() -> Iterator[None]:
    """The calling thread's torch thread count set to OpenBLAS's for a kernel (the engines set
    that per run to cores // devices; torch's setting is per thread), then restored."""
    import torch

    ctl = _openblas()
    want = max(1, int(ctl.get_num_threads())) if ctl is not None else 1
    had = torch.get_num_threads()
    if had != want:
        torch.set_num_threads(want)
    try:
        yield
    finally:
        if had != want:
            torch.set_num_threads(had)


GEMMS: dict[GemmName, Gemm] = {"openblas": openblas_gemm, "torch": torch_gemm, "numpy": numpy_gemm}


def _cpu_vendor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@functools.cache
def default_gemm() -> GemmName:
    """torch on Intel CPUs with MKL, else numpy's OpenBLAS through CBLAS, else plain numpy.
    The vendor is read first: importing torch takes seconds a first run should not pay."""
    if _cpu_vendor() == "GenuineIntel":
        import torch

        if torch.backends.mkl.is_available():
            return "torch"
    return "openblas" if _cblas() is not None else "numpy"


def gemm(
    am: np.ndarray,
    bm: np.ndarray,
    out: np.ndarray | None = None,
    alpha: float = 1.0,
    init3: np.ndarray | None = None,
) -> np.ndarray:
    """`alpha * (am @ bm) + init3` for float32 (B, M, K) @ (B, K, N) by the machine's fastest
    GEMM; float64 and small products stay on np.matmul, so the float64 reference results the
    tests compare against come from one library."""
    big = am.dtype == np.float32 and am.size * bm.shape[-1] >= GEMM_MIN
    return GEMMS[default_gemm() if big else "numpy"](am, bm, out, alpha, init3)
