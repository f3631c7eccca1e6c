"""The end-to-end differential harness: random graphs with gradients, compiled with the default
options and with random ones (fusion, every partitioner, the cheap placers, 1-5 devices,
priorities, budgets from below the smallest feasible one to unconstrained, local and memory
engines), must compute what the reference interpreter computes at every level, and the reference
must agree with torch autograd in float64; random partitions, placements and per-device budgets
are checked stage by stage too. A failure prints a program that reproduces it.

`make fuzz` runs the same checks on many more graphs (`--fuzz-examples`)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from einrel.testing import Choices, Options, check_compiled, draw_case, draw_options, reference
from einrel.testing.differential import check_blocks
from helpers import local_ray

SHARDS = 8  # the examples are split into this many test items so that xdist spreads them


class DrawChoices(Choices):
    """Decisions drawn from hypothesis, so that a failing case shrinks."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))


def run_examples(n: int, check) -> None:
    @settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(st.data())
    def inner(data: st.DataObject) -> None:
        ch = DrawChoices(data)
        case = draw_case(ch)
        note(case.program())
        check(ch, case)

    inner()


def default_and_random(ch: Choices, case) -> None:
    ref = reference(case)
    check_compiled(ref, Options())  # er.compile(outs): the default options
    check_compiled(ref, draw_options(ch, case))
    check_blocks(ref, ch)  # random partitions, placements and budgets, stage by stage


@pytest.mark.parametrize("shard", range(SHARDS))
def test_random_graphs_match_the_reference(shard: int, fuzz_examples: int) -> None:
    run_examples(max(1, fuzz_examples // SHARDS), default_and_random)


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray")
    with local_ray(2) as r:
        yield r


def on_ray(ch: Choices, case) -> None:
    check_compiled(reference(case), draw_options(ch, case, ray=True))


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_random_graphs_on_ray_match_the_reference(ray_cluster) -> None:
    run_examples(12, on_ray)


def test_the_printed_programs_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The programs a failure prints are standalone: capture them and run each one."""

    from einrel.testing import RandomChoices
    from einrel.testing.differential import Reference

    programs: set[str] = set()
    real = Reference.check

    def capture(self, got, what: str, program: str) -> None:
        programs.add(program)
        real(self, got, what, program)

    monkeypatch.setattr(Reference, "check", capture)
    for seed in range(3):
        ch = RandomChoices(seed)
        case = draw_case(ch)
        ref = reference(case)
        check_compiled(ref, draw_options(ch, case))
        check_blocks(ref, ch)
        programs.add(case.program())
    assert len(programs) >= 6
    for program in programs:
        exec(compile(program, "<printed program>", "exec"), {})
