"""Joining a Ray cluster and holding einrel's device actors in it.

`connect` joins (or starts) the Ray runtime with errors that name the address; `assign_nodes`
spreads devices over the alive nodes within their CPUs and memory; `OWNERS` keeps the handles
that keep this process's shared device actors alive.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import ray

from ...devices import cores
from ...errors import CompileError


class Owners:
    """The handles that keep this process's shared device actors alive, by (Ray job, name).

    A Ray actor lives while the handle its creator got lives (handles looked up by name do not
    count), so the process, not any one program, must hold it: a program that created an actor
    may close while others still use it. This is the one piece of process-wide state of the
    Ray engine, as the Ray connection itself is.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handles: dict[tuple[str, str], Any] = {}

    def get_or_start(self, name: str, start: Any) -> Any:
        key = (ray.get_runtime_context().get_job_id(), name)
        with self.lock:
            h = self.handles.get(key)
            if h is None:
                h = self.handles[key] = start()
            return h

    def current(self, name: str) -> Any:
        return self.handles.get((ray.get_runtime_context().get_job_id(), name))

    def drop(self, name: str, handle: Any) -> None:
        """Forget `handle` (dead or killed) unless the name already holds a newer actor."""
        key = (ray.get_runtime_context().get_job_id(), name)
        with self.lock:
            h = self.handles.get(key)
            if h is not None and h._actor_id == handle._actor_id:
                del self.handles[key]


OWNERS = Owners()


def connect(address: str | None, ndev: int, cpus_per_device: float) -> bool:
    """Join (or start) the Ray runtime; True if this call started a local one."""
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto") and _host_port(address) != _host_port(current):
            raise CompileError(
                f"er.ray(address={address!r}): this process is already connected to the Ray "
                f"cluster at {current}; call ray.shutdown() first to join another one"
            )
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True}
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # what ray.init() itself would join
    try:
        if address is None:
            ncpu = max(cores(), int(-(-ndev * cpus_per_device // 1)))
            ray.init(num_cpus=ncpu, **kwargs)
            return True
        _check_reachable(address)
        ray.init(address=address, **kwargs)
    except CompileError:
        raise
    except Exception as exc:
        raise CompileError(
            _unreachable(address, f"{type(exc).__name__}: {str(exc).rstrip('.')}")
        ) from exc
    return False


def _unreachable(address: str | None, why: str) -> str:
    return (
        f"er.ray(address={address!r}): cannot reach the Ray cluster: {why}. Start one with "
        f"`ray start --head` (and `ray start --address=HEAD_IP:6379` on the other machines), "
        f"or pass address=None for a local cluster."
    )


def _host_port(address: str) -> tuple[str, int] | None:
    """("host", port) of a GCS address "host:port" (port 6379 when omitted); None otherwise."""
    if "://" in address:
        return None
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "6379")
    try:
        return socket.gethostbyname(host), int(port)
    except (OSError, ValueError):
        return None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on an address nobody listens on (Ray itself retries for minutes)."""
    target = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address(address) or address
        except Exception:
            return  # let ray.init report that it found no cluster
    if "://" in target:
        return  # Ray Client addresses ("ray://host:10001"): ray.init has its own timeout
    hp = _host_port(target)
    if hp is None:
        raise CompileError(_unreachable(address, f"{target!r} is not a host:port address"))
    try:
        socket.create_connection(hp, timeout=timeout_s).close()
    except OSError as exc:
        raise CompileError(_unreachable(address, f"{hp[0]}:{hp[1]}: {exc}")) from exc


def assign_nodes(n: int, cpd: float, mem: int | None) -> list[str]:
    """Spread n devices of `cpd` CPUs and `mem` bytes each evenly over the alive nodes
    (consecutive devices share a node), within each node's CPUs and memory; the driver's node
    first."""
    nodes = [x for x in ray.nodes() if x.get("Alive")]
    if not nodes:
        raise CompileError("the Ray cluster has no alive node")
    here = ray.get_runtime_context().get_node_id()
    nodes.sort(key=lambda x: (x["NodeID"] != here, x["NodeID"]))
    caps = []
    for x in nodes:
        res = x.get("Resources", {})
        cap = n if cpd == 0 else int(res.get("CPU", 0) // cpd + 1e-9)
        if mem is not None:
            cap = min(cap, int(res.get("memory", 0) // mem))
        caps.append(cap)
    avail = ray.available_resources()
    # Too small a cluster fails now; CPUs merely busy are waited for (startup_timeout_s).
    if sum(caps) < n:
        what = f"{cpd:g} CPU" + (f" and {mem} bytes of memory" if mem is not None else "")
        have = ", ".join(
            f"{x['NodeManagerAddress']}: {x.get('Resources', {}).get('CPU', 0):g} CPU, "
            f"{x.get('Resources', {}).get('memory', 0) / 2**30:.1f} GiB"
            for x in nodes
        )
        raise CompileError(
            f"er.ray({n}): the Ray cluster lacks the resources for {n} device actors of "
            f"{what} each (free now: {avail.get('CPU', 0.0):g} CPU; nodes: {have}). Use "
            f"fewer devices, add nodes, or lower cpus_per_device."
        )
    k = len(nodes)
    quota = [min(c, n // k + (i < n % k)) for i, c in enumerate(caps)]
    short = n - sum(quota)
    for i, c in enumerate(caps):  # overflow onto nodes with room to spare
        extra = min(short, c - quota[i])
        quota[i] += extra
        short -= extra
    return [nodes[i]["NodeID"] for i, q in enumerate(quota) for _ in range(q)]
