"""Differential tests over random relation programs: the reference interpreter equals torch
autograd on the dense equivalent with absent entries masked (loss and gradients, the
relation's included), and compiled programs on random device counts and placers equal the
reference, relation outputs in the source's tuple order."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import einrel as er
from einrel.testing.relations import RelCase, build, relation_cases, torch_loss_and_grads

# float64 throughout: the two sides sum in different orders, nothing else differs
RTOL, ATOL = 1e-10, 1e-12
PLACERS = ("critical-path", "round-robin", "heft", "random")


def values(x: object) -> np.ndarray:
    return x.values if isinstance(x, er.Coo) else np.asarray(x)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(relation_cases())
def test_reference_gradients_equal_torch_autograd_on_the_masked_dense(case: RelCase) -> None:
    b = build(case)
    grads = er.grad(b.loss, b.targets)
    got = er.evaluate([b.loss, *grads], b.feeds, strict=False)
    loss, want = torch_loss_and_grads(case, b.feeds)
    np.testing.assert_allclose(got[0], loss, rtol=RTOL, atol=ATOL)
    assert isinstance(got[1], er.Coo) and np.array_equal(got[1].indices, case.indices)
    for g, w in zip(got[1:], want):
        np.testing.assert_allclose(values(g), w, rtol=RTOL, atol=ATOL)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(relation_cases(), st.integers(1, 3), st.sampled_from(PLACERS), st.booleans())
def test_compiled_relation_programs_equal_the_reference(
    case: RelCase, ndev: int, placer: str, fuse: bool
) -> None:
    b = build(case)
    outs = [*b.outputs, *er.grad(b.loss, b.targets)]
    want = er.evaluate(outs, b.feeds, strict=False)
    prog = er.compile(outs, devices=er.cpu(ndev), placer=placer, fuse=fuse, progress=False)
    try:
        got = prog(b.feeds, strict=False)
        for a, w in zip(got, want):
            assert type(a) is type(w)
            if isinstance(w, er.Coo):
                assert np.array_equal(a.indices, w.indices) and a.shape == w.shape
            np.testing.assert_allclose(values(a), values(w), rtol=RTOL, atol=ATOL)
    finally:
        prog.close()
