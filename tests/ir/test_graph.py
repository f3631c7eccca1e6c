"""The lazy graph: deterministic numbering, readable printing, validation."""

from __future__ import annotations

import numpy as np
import pytest

import einrel as er
from einrel.ir.graph import GNode, check_dtype, check_shape


def mlp():
    x = er.input("x", (4, 3))
    w = er.input("w", (3, 2))
    b = er.input("b", (2,))
    h = er.relu(x @ w + b)
    loss = er.mse(h, er.zeros((4, 2))) * er.var("scale")
    return loss, (x, w, b)


EXPECTED_MLP = """\
graph(x: f32[4,3], w: f32[3,2], b: f32[2]; $scale) {
  %2 = einsum[mk,kn->mn | m=4 n=2 k=3 agg=sum](x, w)  : f32[4,2]
  %4 = einsum[ab,b->ab | a=4 b=2 join=x0 + x1](%2, b)  : f32[4,2]
  %5 = einsum[ab->ab | a=4 b=2 join=max(x0, 0)](%4)  : f32[4,2]
  %6 = fill[0.0]()  : f32[4,2]
  %7 = einsum[ab,ab-> | a=4 b=2 agg=sum join=0.125*(x0 - x1)*(x0 - x1)](%5, %6)  : f32[]
  %8 = einsum[-> | join=x0*$scale](%7)  : f32[]
  return %8
}"""


def test_graph_prints_readably():
    loss, _ = mlp()
    assert str(loss.graph()) == EXPECTED_MLP


def test_einsums_without_labels_print_without_empty_fields():
    assert str(er.einsum(",->", 2.0, 3.0).node.attrs) == "einsum[-> | join=6]"
    x = er.input("x", (), "float64")
    assert str(er.einsum("->", x, agg=None).node.attrs) == "einsum[->]"


def test_structural_nodes_print():
    x = er.input("x", (2, 4), "float64")
    y = er.concat([x[:, 1:3], er.reshape(x, (4, 2))[:2]], axis=1)
    z = er.stop_gradient(y) * 2
    text = str(z.graph())
    assert text.startswith("graph(x: f64[2,4]) {")
    assert "slice[0:2, 1:3](x)  : f64[2,2]" in text
    assert "reshape[(4, 2)](x)  : f64[4,2]" in text
    assert "concat[axis=1](%1, %3)  : f64[2,4]" in text
    assert "stop_grad" in text
    assert text.endswith("return %6\n}")


def test_building_the_same_model_twice_gives_the_same_graph():
    texts = []
    for _ in range(2):
        loss, params = mlp()
        grads = er.grad(loss, list(params))
        texts.append(str(er.build_graph([loss, *grads])))
    assert texts[0] == texts[1]
    assert "return %8, " in texts[0]


def test_ids_are_a_topological_order():
    loss, params = mlp()
    g = er.build_graph([loss, *er.grad(loss, list(params))])
    assert [n.id for n in g.nodes] == list(range(len(g)))
    for n in g.nodes:
        assert all(i < n.id for i in n.inputs)
        for c in g.consumers(n.id):
            assert n.id in g[c].inputs
    assert [n.name for n in g.inputs] == ["x", "w", "b"]
    assert g.variables == ("scale",)
    # every node is reachable from an output
    reach = set(g.outputs)
    for n in reversed(g.nodes):
        if n.id in reach:
            reach |= set(n.inputs)
    assert reach == set(range(len(g)))


def test_shared_subgraphs_appear_once():
    x = er.input("x", (3,), "float64")
    h = er.exp(x)
    y = h * h + h
    g = y.graph()
    assert sum(n.op == "input" for n in g.nodes) == 1
    assert len(g) == 4  # x, exp, h*h, + h
    assert g.consumers(1) == (2, 3)
    got = er.evaluate(y, {"x": np.array([0.0, 1.0, -1.0])})
    e = np.exp([0.0, 1.0, -1.0])
    np.testing.assert_allclose(got, e * e + e, rtol=1e-15)


def test_duplicate_input_names_are_rejected():
    a = er.input("x", (2,))
    b = er.input("x", (2,))
    with pytest.raises(er.EinrelError, match="'x'") as info:
        (a + b).graph()
    assert "unique" in str(info.value)
    (a + a).graph()  # the same input twice is fine


def test_input_and_variable_names_must_differ():
    x = er.input("lr", (2,))
    with pytest.raises(er.EinrelError, match="lr"):
        (x * er.var("lr")).graph()


def test_outputs_must_be_tensors():
    with pytest.raises(er.EinrelError, match="ndarray"):
        er.build_graph([np.zeros(2)])


def test_gnode_details():
    x = er.input("x", (2, 3), "float16")
    y = er.einsum("ij->j", x)
    g = er.build_graph([y, x])
    assert g.outputs == (1, 0)
    n = g[1]
    assert isinstance(n, GNode)
    assert n.op == "einsum" and n.einsum.spec == "ij->j"
    assert n.nbytes == 3 * 2 and g[0].nbytes == 6 * 2
    assert er.input("b", (4,), "bfloat16").graph()[0].nbytes == 8
    assert er.input("d", (4,), "float64").graph()[0].nbytes == 32


def test_input_validation():
    assert check_shape([2, 3], "t") == (2, 3)
    assert check_shape((), "t") == ()
    for bad in [(0, 2), (-1,), (2.5,), 3, "ab", None]:
        with pytest.raises(er.ShapeError):
            check_shape(bad, "t")
    for name in ["float32", "float64", "float16", "bfloat16"]:
        assert check_dtype(name, "t") == name
    for bad in ["int8", "float8", None, np.int32]:
        with pytest.raises(er.ShapeError, match="dtype"):
            check_dtype(bad, "t")
    for bad in ["", None, 3]:
        with pytest.raises(er.EinrelError, match="name"):
            er.input(bad, (2,))
