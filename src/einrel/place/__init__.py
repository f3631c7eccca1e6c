"""Device placement: operation DAGs, Doppler graph files, the simulator and the placers."""

from .dag import PlaceGraph
from .graphfile import load_graph_file
from .heuristics import PLACERS, get_placer
from .simulate import simulate

__all__ = ["PLACERS", "PlaceGraph", "get_placer", "load_graph_file", "simulate"]
