"""One exception family: `except er.EinrelError` catches everything einrel raises on purpose."""

from __future__ import annotations


class EinrelError(Exception):
    """Base class of every error einrel raises on purpose."""


class SpecError(EinrelError, ValueError):
    """An einsum spec that cannot be parsed or does not match its operands."""


class JoinError(EinrelError, TypeError):
    """A join callable that cannot be traced into the scalar language."""


class ShapeError(EinrelError, ValueError):
    """Operands whose shapes or dtypes do not fit an operation."""


class FeedError(EinrelError, ValueError):
    """Feeds that miss an input or variable, or give one with a wrong shape or dtype."""


class GradError(EinrelError, ValueError):
    """A gradient request that has no meaning (non-scalar output, non-differentiable node)."""


class CompileError(EinrelError, ValueError):
    """A plan that cannot be built: bad partition, device set, partitioner or placer."""


class MemoryBudgetError(CompileError):
    """A device budget below what the finest split of some task needs."""


class GraphFileError(EinrelError, ValueError):
    """A malformed placement graph file."""


class ProgramFileError(EinrelError, ValueError):
    """A saved program that cannot be loaded here: not one, from another einrel version, or
    planned for other devices, shapes or tensors than those asked for."""


class ExecutionError(EinrelError, RuntimeError):
    """A kernel or a worker failed while running a plan."""
