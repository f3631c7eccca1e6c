"""Doppler (the Doppler paper): device placement by two learned policies in plain torch.

SEL picks which legal op to place next, PLC picks its device; both are heads on an
edge-conditioned MPNN over the task graph. Training has three stages: imitation of the
critical-path heuristic, policy gradient on the simulator's makespan, policy gradient on the
local engine's measured makespan. `einrel.place.placers.Doppler` ("doppler") and
`DopplerSearch` ("doppler+search") are the placers built on it.

    from einrel.place.doppler import DopplerPolicy, train
    policy = DopplerPolicy(ndev=4)
    train(policy, graph, stage=1, episodes=2000)
    train(policy, graph, stage=2, episodes=2000)
    policy.save("policy.pt")
    assignment = Doppler(policy="policy.pt")(graph, 4)   # from einrel.place.placers
"""

from .features import fingerprint, graph_features
from .losses import il_loss
from .placer import policy_for, train_policy
from .policy import DopplerPolicy, cache_dir, find_policy, load_policy
from .recipes import STAGES, TrainConfig
from .trainer import TrainLog, train

__all__ = [
    "STAGES",
    "DopplerPolicy",
    "TrainConfig",
    "TrainLog",
    "cache_dir",
    "find_policy",
    "fingerprint",
    "graph_features",
    "il_loss",
    "load_policy",
    "policy_for",
    "train",
    "train_policy",
]
