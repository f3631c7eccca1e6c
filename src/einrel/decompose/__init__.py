"""Decomposition: a partition per graph node, its modelled cost, and the partitioners."""

from __future__ import annotations

from .cost import NodeCost, node_costs, plan_cost, repartition_cost, repartition_cost_approx
from .eindecomp import eindecomp
from .partition import PartDim, Partition, refinement
from .partitioners import PARTITIONERS, get_partitioner

__all__ = [
    "PARTITIONERS",
    "NodeCost",
    "PartDim",
    "Partition",
    "eindecomp",
    "get_partitioner",
    "node_costs",
    "plan_cost",
    "refinement",
    "repartition_cost",
    "repartition_cost_approx",
]
