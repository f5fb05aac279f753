"""Process-group setup for torchrun and SLURM, and the collective helpers the packages use.

Three ways a process can be started, checked in this order:

1. torchrun (or any launcher that sets ``RANK`` and ``WORLD_SIZE``, plus ``LOCAL_RANK``,
   ``MASTER_ADDR``, ``MASTER_PORT``);
2. SLURM ``srun`` with one task per GPU (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``,
   ``SLURM_JOB_NODELIST``); the master is the first host of the node list, expanded here without
   calling ``scontrol``;
3. neither: a single process, no process group.

NCCL is used when the device is CUDA, gloo otherwise. Every helper below also works without a process
group (single process), so package code never branches on it.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import ConfigError

DEFAULT_MASTER_PORT = 29500
T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """What the launcher told this process. ``source`` is 'torchrun', 'slurm' or 'single'."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: str


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets: 'a[1-2,4],b' -> ['a[1-2,4]', 'b']."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in SLURM node list {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"unbalanced '[' in SLURM node list {text!r}")
    parts.append(text[start:])
    return [p for p in parts if p]


def _expand_range(spec: str, nodelist: str) -> list[str]:
    out: list[str] = []
    for item in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item.strip())
        if not m:
            raise ValueError(f"bad range {item!r} in SLURM node list {nodelist!r}")
        lo, hi = m.group(1), m.group(2)
        if hi is None:
            out.append(lo)
            continue
        if int(hi) < int(lo):
            raise ValueError(f"descending range {item!r} in SLURM node list {nodelist!r}")
        width = len(lo)  # zero padding is kept: gpu[08-10] -> gpu08, gpu09, gpu10
        out.extend(str(i).zfill(width) for i in range(int(lo), int(hi) + 1))
    return out


def parse_slurm_nodelist(nodelist: str) -> list[str]:
    """Expand a compressed SLURM host list, as ``scontrol show hostnames`` would.

    >>> parse_slurm_nodelist("gpu[01-03,07],login1")
    ['gpu01', 'gpu02', 'gpu03', 'gpu07', 'login1']

    Several bracket groups in one name (``rack[1-2]-n[1-2]``) expand as a product, in SLURM's order.
    """
    hosts: list[str] = []
    for part in _split_top_level(nodelist.strip()):
        names = [""]
        for m in re.finditer(r"([^\[\]]+)|\[([^\]]*)\]", part):
            literal, ranges = m.group(1), m.group(2)
            if literal is not None:
                names = [n + literal for n in names]
            else:
                names = [n + r for n in names for r in _expand_range(ranges, nodelist)]
        hosts.extend(names)
    if not hosts:
        raise ValueError(f"empty SLURM node list {nodelist!r}")
    return hosts


def _int_env(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise ConfigError(f"environment variable {key}={env[key]!r} is not an integer") from None


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read the launcher's environment: torchrun first, then SLURM, else a single process."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(
            rank=_int_env(env, "RANK"),
            world_size=_int_env(env, "WORLD_SIZE"),
            local_rank=_int_env(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=_int_env(env, "MASTER_PORT") if "MASTER_PORT" in env else DEFAULT_MASTER_PORT,
            source="torchrun",
        )
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and _int_env(env, "SLURM_NTASKS") > 1:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if "MASTER_ADDR" in env:
            master = env["MASTER_ADDR"]
        elif nodelist:
            master = parse_slurm_nodelist(nodelist)[0]
        else:
            raise ConfigError("SLURM job with several tasks but neither MASTER_ADDR nor SLURM_JOB_NODELIST is set")
        if "MASTER_PORT" in env:
            port = _int_env(env, "MASTER_PORT")
        else:
            # A port derived from the job id keeps two jobs sharing a node from colliding.
            port = 15000 + _int_env(env, "SLURM_JOB_ID") % 20000 if "SLURM_JOB_ID" in env else DEFAULT_MASTER_PORT
        return DistEnv(
            rank=_int_env(env, "SLURM_PROCID"),
            world_size=_int_env(env, "SLURM_NTASKS"),
            local_rank=_int_env(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
            master_addr=master,
            master_port=port,
            source="slurm",
        )
    return DistEnv(rank=0, world_size=1, local_rank=0, master_addr="127.0.0.1", master_port=DEFAULT_MASTER_PORT, source="single")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> this rank's CUDA device when there is one, else CPU; 'cuda' without a GPU is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be one of auto, cpu, cuda; got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but torch sees no CUDA device")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank, world size, device and backend."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None
    source: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto", timeout_s: float = 1800.0, environ: Mapping[str, str] | None = None) -> DistContext:
    """Set up the process group the launcher asked for (or none) and pick this rank's device."""
    env = detect_env(environ)
    dev = resolve_device(device, env.local_rank)
    if env.world_size == 1:
        return DistContext(0, 1, 0, dev, None, env.source)
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), env.local_rank, dev, dist.get_backend(), env.source)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    os.environ.setdefault("MASTER_ADDR", env.master_addr)
    os.environ.setdefault("MASTER_PORT", str(env.master_port))
    check_resolvable(os.environ["MASTER_ADDR"], env.source)
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=env.rank,
        world_size=env.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return DistContext(env.rank, env.world_size, env.local_rank, dev, backend, env.source)


def check_resolvable(host: str, source: str, wait_s: float = 30.0) -> None:
    """Fail with a ConfigError naming ``host`` when it does not resolve within ``wait_s`` seconds.

    torch's rendezvous retries an unresolvable MASTER_ADDR until its timeout (30 minutes by default)
    with nothing but connection warnings; a cluster whose node names are not in DNS (the first node of
    SLURM_JOB_NODELIST) needs MASTER_ADDR set to an address instead, and should hear so at once.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            socket.getaddrinfo(host, None)
            return
        except (socket.gaierror, UnicodeError) as e:
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"MASTER_ADDR={host!r} (from the {source} environment) does not resolve ({e}); set MASTER_ADDR "
                    "to the first node's IP address or a name every node can resolve"
                ) from None
            time.sleep(min(2.0, max(deadline - time.monotonic(), 0.0)))


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if _active():
        dist.barrier()


def _all_reduce(tensor: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
    out = tensor.detach().clone()
    if _active():
        if dist.get_backend() == "nccl" and out.device.type != "cuda":
            out = out.cuda()  # NCCL reduces CUDA tensors only
        dist.all_reduce(out, op=op)
    return out.to(tensor.device)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (returns a new tensor; the input is untouched)."""
    return _all_reduce(tensor, dist.ReduceOp.SUM)


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over ranks (returns a new tensor)."""
    return _all_reduce(tensor, dist.ReduceOp.MAX)


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list without a process group)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def main_then_broadcast(fn: Callable[[], T]) -> T:
    """``fn()`` computed on rank 0 only and given to every rank (a collective: call it on all ranks).

    For work that must happen once (reading and checking a data set, warning about bad files once, not
    once per rank). If ``fn`` raises on rank 0, every rank raises: the same ``UserError`` kind with the
    same message, or a RuntimeError naming rank 0's failure, instead of waiting for the broadcast until
    the process-group timeout.
    """
    from . import errors

    result: Any = None
    failure: tuple[str, str, bool] | None = None
    raised: BaseException | None = None
    if get_rank() == 0:
        try:
            result = fn()
        except Exception as e:
            failure, raised = (type(e).__name__, str(e), isinstance(e, errors.UserError)), e
    if _active():
        result, failure = broadcast_object((result, failure))
    if failure is not None:
        if raised is not None:
            raise raised
        name, message, user_error = failure
        if user_error:
            kind = getattr(errors, name, errors.UserError)
            raise (kind if isinstance(kind, type) and issubclass(kind, errors.UserError) else errors.UserError)(message)
        raise RuntimeError(f"rank 0 failed: {name}: {message}")
    return result


def gather_by_index(indices: torch.Tensor | Sequence[int], *arrays: Any) -> tuple[Any, ...]:
    """Gather per-sample results from all ranks and put them in dataset order.

    ``indices`` are the dataset indices this rank evaluated (from ``EvalSampler``); each array has one
    row per index (tensors or numpy arrays). Returns ``(indices, *arrays)`` over all ranks, sorted by
    index, as CPU tensors / numpy arrays. Duplicated indices are an error: evaluation must count every
    sample once.
    """
    import numpy as np

    idx = torch.as_tensor(indices).detach().cpu().long()
    local = [idx] + [a.detach().cpu() if isinstance(a, torch.Tensor) else np.asarray(a) for a in arrays]
    for a in local[1:]:
        if len(a) != len(idx):
            raise ValueError(f"gather_by_index: an array has {len(a)} rows for {len(idx)} indices")
    parts = all_gather_object(local)
    all_idx = torch.cat([p[0] for p in parts])
    order = torch.argsort(all_idx)
    sorted_idx = all_idx[order]
    if len(sorted_idx) > 1 and bool((sorted_idx[1:] == sorted_idx[:-1]).any()):
        raise RuntimeError("gather_by_index: a sample was evaluated on more than one rank")
    out: list[Any] = [sorted_idx]
    for k in range(1, len(local)):
        if isinstance(local[k], torch.Tensor):
            out.append(torch.cat([p[k] for p in parts])[order])
        else:
            out.append(np.concatenate([p[k] for p in parts])[order.numpy()])
    return tuple(out)


def shutdown(wait: bool = True) -> None:
    """Tear the process group down (safe to call when there is none).

    ``wait=False`` skips the final barrier: after an error the other ranks may never reach it.
    """
    if _active():
        try:
            if wait:
                dist.barrier()
        finally:
            dist.destroy_process_group()
