"""Device placement: operation DAGs, Doppler graph files, the simulator and the placers."""

from .dag import PlaceGraph
from .graphfile import load_graph_file
from .placers import PLACERS, Placer, get_placer
from .simulate import simulate

__all__ = ["PLACERS", "PlaceGraph", "Placer", "get_placer", "load_graph_file", "simulate"]
