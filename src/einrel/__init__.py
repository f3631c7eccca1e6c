"""einrel: write a model in extended einsum; einrel decomposes, places, plans memory and runs it."""

from .decompose import partitioners
from .devices import Devices, cpu, gpu, ray
from .errors import (
    CompileError,
    EinrelError,
    ExecutionError,
    FeedError,
    GradError,
    GraphFileError,
    JoinError,
    MemoryBudgetError,
    ProgramFileError,
    ShapeError,
    SpecError,
)
from .frontend import optim
from .frontend.autodiff import grad
from .frontend.functions import abs_ as abs
from .frontend.functions import (
    exp,
    gelu,
    log,
    maximum,
    minimum,
    relu,
    sigmoid,
    silu,
    sqrt,
    tanh,
    where,
)
from .frontend.leaves import causal_mask, fill, input, ones, var, zeros
from .frontend.nn import cross_entropy, layer_norm, log_softmax, mse, rms_norm, softmax
from .frontend.reference import evaluate
from .frontend.relation import coo, densify, relation
from .frontend.structure import concat
from .frontend.tensor import (
    Tensor,
    astype,
    broadcast_shapes,
    build_graph,
    einsum,
    elementwise,
    matmul,
    mean,
    reshape,
    stop_gradient,
    transpose,
)
from .frontend.tensor import slice_ as slice
from .frontend.tensor import sum_ as sum
from .ir.graph import Graph
from .kernels.coo import Coo
from .loading import load
from .place import placers
from .program import Plan, Program, Report, compile
from .version import __version__ as __version__

__all__ = [
    "CompileError",
    "Coo",
    "Devices",
    "EinrelError",
    "ExecutionError",
    "FeedError",
    "GradError",
    "Graph",
    "GraphFileError",
    "JoinError",
    "MemoryBudgetError",
    "Plan",
    "Program",
    "ProgramFileError",
    "Report",
    "ShapeError",
    "SpecError",
    "Tensor",
    "abs",
    "astype",
    "broadcast_shapes",
    "build_graph",
    "causal_mask",
    "compile",
    "concat",
    "coo",
    "cpu",
    "cross_entropy",
    "densify",
    "einsum",
    "elementwise",
    "evaluate",
    "exp",
    "fill",
    "gelu",
    "gpu",
    "grad",
    "input",
    "layer_norm",
    "load",
    "log",
    "log_softmax",
    "matmul",
    "maximum",
    "mean",
    "minimum",
    "mse",
    "ones",
    "optim",
    "partitioners",
    "placers",
    "ray",
    "relation",
    "relu",
    "reshape",
    "rms_norm",
    "sigmoid",
    "silu",
    "slice",
    "softmax",
    "sqrt",
    "stop_gradient",
    "sum",
    "tanh",
    "transpose",
    "var",
    "where",
    "zeros",
]
