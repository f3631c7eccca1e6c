"""Random einrel programs and the differential checks every level of the pipeline must pass.

`draw_case(choices)` gives a `Case` (einrel source lines with a loss and its gradients);
`reference(case)` evaluates it and checks it against torch autograd; `check_compiled(ref,
options)` compiles it and compares the fused graph, the block and memory interpreters and the
engine with the reference. Failures raise `Mismatch` with a program that reproduces them.
"""

from .builder import Choices, RandomChoices
from .cases import Case, draw_case
from .differential import Mismatch, Options, check_compiled, draw_options, reference

__all__ = [
    "Case",
    "Choices",
    "Mismatch",
    "Options",
    "RandomChoices",
    "check_compiled",
    "draw_case",
    "draw_options",
    "reference",
]
