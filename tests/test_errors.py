"""Bad input: one test per case. Every error is an er.EinrelError raised at build time (or when
feeds are bound) whose message names the spec, the shapes and the node where that applies."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import einrel as er


def raises(exc: type[er.EinrelError], fn, *needles: str) -> str:
    """Call fn, check the exception type and that its message contains every needle."""
    assert issubclass(exc, er.EinrelError)
    with pytest.raises(exc) as info:
        fn()
    assert isinstance(info.value, er.EinrelError)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


@pytest.fixture
def x():
    return er.input("x", (3, 4))


@pytest.fixture
def y():
    return er.input("y", (5, 2))


def test_error_family():
    for exc in (
        er.SpecError,
        er.JoinError,
        er.ShapeError,
        er.FeedError,
        er.GradError,
        er.CompileError,
        er.MemoryBudgetError,
        er.GraphFileError,
        er.ExecutionError,
    ):
        assert issubclass(exc, er.EinrelError)
    assert issubclass(er.MemoryBudgetError, er.CompileError)


# --- einsum specs -----------------------------------------------------------------------------


def test_wrong_operand_count(x):
    raises(
        er.SpecError,
        lambda: er.einsum("ij,jk->ik", x),
        "einsum",
        "'ij,jk->ik'",
        "(3, 4)",
        "2 operand(s) but 1",
    )


def test_unknown_output_label(x):
    raises(er.SpecError, lambda: er.einsum("ij->ik", x), "einsum", "'ij->ik'", "(3, 4)", "'k'")


def test_label_size_differs_between_operands(x, y):
    raises(
        er.SpecError,
        lambda: er.einsum("ij,jk->ik", x, y),
        "einsum",
        "'ij,jk->ik'",
        "(3, 4)",
        "(5, 2)",
        "'j'",
        "size 4",
        "5",
    )


def test_unsupported_aggregation(x):
    raises(
        er.SpecError,
        lambda: er.einsum("ij->i", x, agg="mean"),
        "einsum",
        "'ij->i'",
        "(3, 4)",
        "'mean'",
        "sum",
    )


def test_missing_aggregation(x):
    raises(er.SpecError, lambda: er.einsum("ij->i", x, agg=None), "'ij->i'", "(3, 4)", "'j'")


def test_join_of_the_wrong_arity(x):
    raises(
        er.JoinError,
        lambda: er.einsum("ij,ij->ij", x, x, join=lambda a: a),
        "einsum",
        "'ij,ij->ij'",
        "(3, 4)",
        "wrong number of inputs",
    )


def test_join_using_math_sin(x):
    msg = raises(
        er.JoinError,
        lambda: er.einsum("ij->ij", x, join=lambda a: math.sin(a), agg=None),
        "einsum",
        "'ij->ij'",
        "(3, 4)",
        "scalar language",
    )
    assert "math" in msg


def test_join_using_numpy_sin(x):
    raises(
        er.JoinError,
        lambda: er.einsum("ij->ij", x, join=lambda a: np.sin(a), agg=None),
        "einsum",
        "'ij->ij'",
        "(3, 4)",
        "numpy.sin",
    )


def test_join_branching_in_python(x):
    raises(
        er.JoinError,
        lambda: er.einsum("ij,ij->ij", x, x, join=lambda a, b: a if a > b else b, agg=None),
        "'ij,ij->ij'",
        "(3, 4)",
        "er.where",
    )
    raises(
        er.JoinError,
        lambda: er.einsum("ij,ij->ij", x, x, join=lambda a, b: max(a, b), agg=None),
        "'ij,ij->ij'",
        "er.maximum",
    )


def test_join_returning_something_else(x):
    raises(
        er.JoinError,
        lambda: er.einsum("ij->ij", x, join=lambda a: "a", agg=None),
        "'ij->ij'",
        "(3, 4)",
        "str",
    )
    raises(
        er.JoinError,
        lambda: er.einsum("ij->ij", x, join=lambda a: a * [1, 2], agg=None),
        "'ij->ij'",
        "list",
    )
    raises(er.JoinError, lambda: er.einsum("ij->ij", x, join=3, agg=None), "'ij->ij'", "join")


def test_label_repeated_inside_an_operand():
    d = er.input("d", (3, 3))
    raises(er.SpecError, lambda: er.einsum("ii->i", d), "'ii->i'", "(3, 3)", "repeated", "'ii'")


def test_labels_and_rank_disagree(x):
    raises(er.SpecError, lambda: er.einsum("ijk->i", x), "'ijk->i'", "(3, 4)", "rank 2")


def test_bad_characters_and_repeated_output_labels(x):
    raises(er.SpecError, lambda: er.einsum("i1->i", x), "'i1->i'", "letters")
    raises(er.SpecError, lambda: er.einsum("ij->ii", x), "'ij->ii'", "(3, 4)", "repeats")
    raises(er.SpecError, lambda: er.einsum("ij->i->j", x), "'ij->i->j'", "'->'")
    raises(er.SpecError, lambda: er.einsum(3, x), "string")


def test_broadcast_sizes_that_conflict(x):
    raises(er.SpecError, lambda: er.einsum("ij->ij", x, sizes={"i": 5}), "'ij->ij'", "'i'", "5")
    raises(er.SpecError, lambda: er.einsum("ij->ij", x, sizes={"q": 2}), "'ij->ij'", "'q'")
    raises(er.SpecError, lambda: er.einsum("ij->ijk", x, sizes={"k": 0}), "'ij->ijk'", "'k'")


def test_operands_that_are_not_tensors(x):
    raises(er.EinrelError, lambda: er.einsum("ij,ij->ij", x, np.ones((3, 4))), "ndarray")
    raises(er.EinrelError, lambda: x + np.ones((3, 4)), "ndarray")
    raises(er.EinrelError, lambda: x + "a", "str")


def test_operands_of_different_dtypes(x):
    z = er.input("z", (3, 4), "float64")
    raises(er.ShapeError, lambda: er.einsum("ij,ij->ij", x, z), "'ij,ij->ij'", "(3, 4)", "float64")


# --- feeds ------------------------------------------------------------------------------------


@pytest.fixture
def model():
    x = er.input("x", (3, 4))
    w = er.input("w", (4, 2))
    return er.einsum("bi,io->bo", x, w) * er.var("lr")


GOOD = {"x": np.ones((3, 4), np.float32), "w": np.ones((4, 2), np.float32), "lr": 0.1}


def test_feeds_missing_a_name(model):
    feeds = {k: v for k, v in GOOD.items() if k != "w"}
    raises(er.FeedError, lambda: er.evaluate(model, feeds), "missing", "'w'")


def test_feeds_missing_a_variable(model):
    feeds = {k: v for k, v in GOOD.items() if k != "lr"}
    raises(er.FeedError, lambda: er.evaluate(model, feeds), "missing", "'lr'")


def test_feeds_with_a_wrong_shape(model):
    feeds = {**GOOD, "w": np.ones((2, 4), np.float32)}
    raises(er.FeedError, lambda: er.evaluate(model, feeds), "'w'", "(2, 4)", "(4, 2)")


def test_feeds_with_a_wrong_dtype(model):
    feeds = {**GOOD, "x": np.ones((3, 4), np.float64)}
    raises(er.FeedError, lambda: er.evaluate(model, feeds), "'x'", "float64", "float32")
    import torch

    feeds = {**GOOD, "x": torch.ones((3, 4), dtype=torch.float64)}
    raises(er.FeedError, lambda: er.evaluate(model, feeds), "'x'", "float64", "float32")


def test_unknown_feed_names(model):
    raises(er.FeedError, lambda: er.evaluate(model, {**GOOD, "bias": 1.0}), "'bias'")


def test_feeds_that_are_not_arrays_or_numbers(model):
    raises(er.FeedError, lambda: er.evaluate(model, {**GOOD, "x": [[1, 2], [3]]}), "'x'")
    raises(er.FeedError, lambda: er.evaluate(model, {**GOOD, "lr": "fast"}), "'lr'", "fast")
    raises(er.FeedError, lambda: er.evaluate(model, {**GOOD, "lr": True}), "'lr'")
    raises(er.FeedError, lambda: er.evaluate(model, [1, 2]), "mapping")


# --- grad -------------------------------------------------------------------------------------


def test_grad_of_a_non_scalar(x):
    y = x * 2
    raises(er.GradError, lambda: er.grad(y, [x]), "scalar", "(3, 4)")


def test_grad_of_something_that_is_not_a_tensor(x):
    raises(er.GradError, lambda: er.grad(np.float32(1.0), [x]), "float32")
    raises(er.GradError, lambda: er.grad(x.sum(), [np.ones(2)]), "ndarray")


# --- shapes -----------------------------------------------------------------------------------


def test_bad_input_shapes_and_dtypes():
    raises(er.ShapeError, lambda: er.input("x", (3, 0)), "'x'", "(3, 0)")
    raises(er.ShapeError, lambda: er.input("x", (3, -1)), "'x'")
    raises(er.ShapeError, lambda: er.input("x", (3,), "int8"), "'x'", "int8")
    raises(er.ShapeError, lambda: er.input("x", "ab"), "'x'", "'ab'")


def test_lazy_tensors_refuse_eager_use(x):
    raises(er.EinrelError, lambda: bool(x), "truth value")
    raises(er.EinrelError, lambda: np.asarray(x), "lazy", "er.evaluate")


# ---------------------------------------------------------------------------------------------
# Compile options: every bad one fails at compile time and names the right thing
# ---------------------------------------------------------------------------------------------


def _mlp() -> list[er.Tensor]:
    x = er.input("x", (8, 4))
    w = er.input("w", (4, 3))
    loss = er.sum(er.relu(x @ w))
    return [loss, *er.grad(loss, [w])]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"priority": "critcal-path"}, r"unknown priority 'critcal-path' for the local engine"),
        (
            {"priority": "serial", "devices": er.cpu(1)},
            r"unknown priority 'serial' for the local engine.*'critical-path'",
        ),
        (
            {"priority": "sideways", "memory_limit": "1MiB"},
            r"unknown priority 'sideways' for the memory engine.*'fixed'",
        ),
        ({"placr": "heft"}, r"unknown option 'placr' \(did you mean 'placer'\?\)"),
        ({"partitoner": "none"}, r"unknown option 'partitoner' \(did you mean 'partitioner'\?\)"),
        ({"sweeps": 2, "partitioner": "none"}, r"unknown option 'sweeps'.*partitioner_options"),
        (
            {"partitioner": "none", "partitioner_options": {"sweeps": 2}},
            r"partitioner 'none' has no option\(s\) \['sweeps'\]; its options: none",
        ),
        (
            {"memory_limit": "1MiB", "engine_options": {"workers": 2}},
            r"unknown engine option\(s\) \['workers'\] for the memory engine.*workers_per_device",
        ),
        ({"memory_limit": float("nan")}, r"memory_limit: a budget must be a finite number"),
        ({"memory_limit": float("inf")}, r"memory_limit: a budget must be a finite number"),
        ({"memory_limit": "1e999"}, r"memory_limit: cannot read '1e999'"),
        (
            {"devices": er.cpu(2, memory=None), "engine_options": {"seed": 1}},
            r"\['seed'\] for the local engine; valid: .*pool_min_bytes; they apply to the memory",
        ),
        ({"engine_options": {"runner": print}}, r"\['runner'\] for the local engine"),
    ],
)
def test_bad_compile_options_fail_at_compile_time(kwargs, pattern):
    with pytest.raises(er.CompileError, match=pattern):
        er.compile(_mlp(), **kwargs)


def test_partitioner_and_placer_options_pass_through_compile():
    prog = er.compile(_mlp(), devices=er.cpu(2), partitioner_options={"sweeps": 1})
    assert prog.plan.partitioner == "eindecomp"
    prog = er.compile(
        _mlp(),
        devices=er.cpu(2),
        partitioner=er.partitioners.EinDecomp(sweeps=0),
        placer=er.placers.Search(max_evals=20),
    )
    assert (prog.plan.partitioner, prog.plan.placer) == ("eindecomp", "search")


def test_a_torch_feed_that_requires_grad_is_detached():
    x = er.input("x", (3,), "float32")
    t = torch.ones(3, requires_grad=True)
    y = x * 2.0
    np.testing.assert_array_equal(er.evaluate(y, {"x": t}), np.full(3, 2.0, np.float32))
    np.testing.assert_array_equal(er.compile(y).run({"x": t}), np.full(3, 2.0, np.float32))


def test_missing_ray_says_how_to_install_it():
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if Ray were not installed\n"
        "import einrel as er\n"
        "x = er.input('x', (4, 4))\n"
        "try:\n"
        "    er.compile([er.relu(x)], devices=er.ray(2))\n"
        "except er.CompileError as e:\n"
        "    assert \"pip install 'einrel[ray]'\" in str(e), e\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
