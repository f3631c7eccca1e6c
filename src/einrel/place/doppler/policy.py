"""A trained Doppler policy (its SEL and PLC networks), greedy decoding, and policy files.

A policy file records the device count the policy was trained for, how many of those devices it
places onto (`active`, see `DopplerPolicy`), the fingerprint and name of the graphs it was trained
on, the network sizes and a training history. Weights are stored in float32 (about 1.3 MB), or with
`half=True` in float16 (about 0.65 MB; saving then rounds the in-memory weights the same way, so the
saved policy and the one loaded back decode identically, but the rounding itself can change greedy
decisions, hence the float32 default).

Policies that ship with einrel live in `policies/`, named `<graph>-<N>dev-<fingerprint>.pt`;
`find_policy` also looks in a per-user cache (`$EINREL_CACHE_DIR/doppler`, else
`$XDG_CACHE_HOME/einrel/doppler`, else `~/.cache/einrel/doppler`) where the placer keeps the
policies it trains on the fly.
"""

from __future__ import annotations

import functools
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from ...errors import CompileError
from ..dag import PlaceGraph, check_ndev
from .env import Episode, rollout
from .features import GraphFeatures, graph_features
from .model import MPNN, GraphTensors, NetConfig, PlcNet, PlcNumpy, SelNet

F = TypeVar("F", bound=Callable[..., Any])

FORMAT = "einrel-doppler-policy"
VERSION = 1
POLICY_DIR = Path(__file__).resolve().parent / "policies"


def one_thread(fn: F) -> F:
    """Run `fn` with one torch thread. The networks are small: a second thread gains little
    alone and costs a lot when the cores are shared (the thread pool spins); restored after."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = torch.get_num_threads()
        if before == 1:
            return fn(*args, **kwargs)
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper  # type: ignore[return-value]


class DopplerPolicy:
    """The shared encoder, the SEL and PLC heads, and what they were trained for.

    `ndev` is the device count of the machine the policy places for; `active` (at most `ndev`,
    all of them unless stage III measured otherwise) is how many of them, devices 0..active−1,
    PLC chooses from. The networks score each device from its own state, so they work for any
    count. Why fewer: logical devices that share cores (`er.cpu(4)` on a 2-core machine) can run
    a graph faster on fewer of them, which only a measured cost shows.
    """

    def __init__(self, ndev: int, config: NetConfig | None = None, seed: int = 0) -> None:
        check_ndev(ndev)
        self.ndev = ndev
        self.active = ndev
        self.config = config or NetConfig()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = MPNN(self.config)
            self.sel = SelNet(self.config)
            self.plc = PlcNet(self.config)
        self.graphs: dict[str, str] = {}  # fingerprint -> name of every graph trained on
        self.history: list[dict[str, Any]] = []

    def add_graph(self, fp: str, name: str) -> None:
        self.graphs.setdefault(fp, name)

    @property
    def fingerprint(self) -> str | None:
        """The first graph the policy was trained on (None before any training)."""
        return next(iter(self.graphs), None)

    @property
    def graph_name(self) -> str | None:
        return next(iter(self.graphs.values()), None)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.encoder.parameters(), *self.sel.parameters(), *self.plc.parameters()]

    def forward(self, gt: GraphTensors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(SEL scores (n,), embeddings H (n, 128), PLC static part (n, 64)) for one graph."""
        h = self.encoder(gt)
        return self.sel(gt, h), h, self.plc.static(gt, h)

    def check_devices(self, ndev: int, source: str = "policy") -> None:
        if ndev != self.ndev:
            raise CompileError(
                f"{source} was trained for {self.ndev} devices, but {ndev} devices were asked "
                f"for; train one with `einrel place train GRAPH --devices {ndev}`"
            )

    @one_thread
    @torch.no_grad()
    def decode(
        self,
        graph: PlaceGraph | GraphFeatures,
        eps: float = 0.0,
        seed: int = 0,
        tensors: GraphTensors | None = None,
    ) -> Episode:
        """One episode with both policies greedy (eps = 0) or ε-greedy."""
        gf = graph if isinstance(graph, GraphFeatures) else graph_features(graph)
        gt = tensors or GraphTensors(gf)
        scores, h, c = self.forward(gt)
        return rollout(
            gf, self.active, scores.numpy(), PlcNumpy(self.plc, h, c), eps, eps, random.Random(seed)
        )

    def place(self, graph: PlaceGraph, ndev: int | None = None) -> list[int]:
        """The greedy assignment: a device per op."""
        if ndev is not None:
            self.check_devices(ndev)
        return self.decode(graph).assignment

    def state(self) -> dict[str, Any]:
        return {
            name: {k: v.detach().clone() for k, v in net.state_dict().items()}
            for name, net in self.nets().items()
        }

    def nets(self) -> dict[str, torch.nn.Module]:
        return {"encoder": self.encoder, "sel": self.sel, "plc": self.plc}

    def load_state(self, state: dict[str, Any]) -> None:
        for name, net in self.nets().items():
            net.load_state_dict(state[name])

    def round_weights(self) -> None:
        """Round every weight to float16 precision, as `save` stores it."""
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(p.half().float())

    def save(self, path: str | Path, half: bool = False) -> Path:
        if half:
            self.round_weights()
        dtype = torch.float16 if half else torch.float32
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "ndev": self.ndev,
            "active": self.active,
            "graphs": dict(self.graphs),
            "config": self.config.to_dict(),
            "history": self.history,
            "weights": {
                name: {k: v.to(dtype) for k, v in net.state_dict().items()}
                for name, net in self.nets().items()
            },
        }
        tmp = p.with_name(p.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> DopplerPolicy:
        p = Path(path)
        try:
            payload = torch.load(p, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CompileError(f"{p}: no such policy file") from None
        except Exception as err:  # torch raises many kinds for a file that is not a policy
            raise CompileError(f"{p}: not a Doppler policy file ({type(err).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CompileError(f"{p}: not a Doppler policy file")
        if payload.get("version") != VERSION:
            raise CompileError(f"{p}: policy file version {payload.get('version')}, need {VERSION}")
        config = dict(payload["config"])
        config.setdefault("device_features", 5)  # files written before the sixth feature
        config.setdefault("node_noise", 0)  # files written before the random node features
        policy = cls(int(payload["ndev"]), NetConfig(**config))
        try:
            policy.load_state(
                {k: {n: t.float() for n, t in w.items()} for k, w in payload["weights"].items()}
            )
        except (KeyError, RuntimeError, AttributeError) as err:
            raise CompileError(f"{p}: damaged policy file ({err})") from None
        active = payload.get("active", policy.ndev)  # files written before it: every device
        if not (isinstance(active, int) and 1 <= active <= policy.ndev):
            raise CompileError(f"{p}: damaged policy file (active devices {active!r})")
        policy.active = active
        policy.graphs = {str(k): str(v) for k, v in (payload.get("graphs") or {}).items()}
        policy.history = list(payload.get("history") or [])
        return policy


def load_policy(path: str | Path, ndev: int | None = None) -> DopplerPolicy:
    """Load a policy file; CompileError naming the file when it was trained for another ndev."""
    policy = DopplerPolicy.load(path)
    if ndev is not None:
        policy.check_devices(ndev, f"policy {path}")
    return policy


def cache_dir() -> Path:
    root = os.environ.get("EINREL_CACHE_DIR")
    if root:
        return Path(root) / "doppler"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "einrel" / "doppler"


def policy_filename(graph_name: str, ndev: int, fp: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.]+", "_", graph_name or "graph").strip("_") or "graph"
    return f"{stem}-{ndev}dev-{fp}.pt"


def find_policy(fp: str, ndev: int, dirs: list[Path] | None = None) -> Path | None:
    """The first policy file for graph fingerprint `fp` and `ndev` devices (committed ones first,
    then the user cache)."""
    for d in dirs if dirs is not None else [POLICY_DIR, cache_dir()]:
        if d.is_dir():
            for f in sorted(d.glob(f"*-{ndev}dev-{fp}.pt")):
                return f
    return None
