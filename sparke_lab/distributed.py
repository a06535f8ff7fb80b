"""Several processes, one shared memory bank: the collectives guidance needs.

Launch any sparke-lab job with ``torchrun`` (or ``accelerate launch``, the same engine) and
:func:`init_distributed` returns a :class:`RankGroup` for this process; on one process it
returns a group of one, whose collectives are no-ops, so the same code runs either way.

What is synchronised, and when (a round = one batch on every rank):

* at every guided step, the features of the samples being generated (``tag="peers"``), so
  samples of one round repel each other across processes as they would inside one batch;
* at the last step of a round, the finished samples (``tag="bank"``), appended to every
  rank's bank in rank order, so all banks stay identical. A :class:`~sparke_lab.guidance.SketchBank`
  can instead all-reduce its fixed-size sums (``sketch_sync="sum"``).

With fixed per-image seeds a run on W processes therefore matches a single-process run with
W times the batch size (same bank-visibility schedule). Gloo on CPUs, NCCL on GPUs.
Every collective is counted in :attr:`RankGroup.stats` (calls, bytes, seconds).

Used by ``sparke-lab compare`` under torchrun; see the README section "Several processes".
"""
from __future__ import annotations

import datetime
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

SKETCH_SYNCS = ("rows", "sum")
#: what a row exchange is for; part of every exchange's header, so that ranks whose
#: collective schedules drifted apart fail loudly instead of pairing the wrong exchanges
_OPS = {"peers": 1, "bank": 2}


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun / accelerate launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class RankGroup:
    """This process's place in the job and the few collectives the guidance uses.

    ``rank``/``world_size``/``local_rank`` as torchrun sets them; ``device`` where this rank
    computes (``cuda:<local_rank>`` with NCCL); ``sketch_sync``: how a sketch bank is
    synchronised, ``"rows"`` (gather the new rows, as the exact bank does; cheaper while a
    round has fewer than ~2m samples) or ``"sum"`` (all-reduce the sketch's sums, a fixed size
    whatever the round size). A group of one (the default) runs no collective.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0,
                 backend: Optional[str] = None, device=None, sketch_sync: str = "rows"):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad rank {rank} for world size {world_size}")
        if sketch_sync not in SKETCH_SYNCS:
            raise ValueError(f"sketch_sync must be one of {SKETCH_SYNCS}, got {sketch_sync!r}")
        self.rank, self.world_size, self.local_rank = int(rank), int(world_size), int(local_rank)
        self.backend = backend
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.sketch_sync = sketch_sync
        self.stats: Dict[str, Dict[str, float]] = {}

    def __repr__(self) -> str:
        return (f"RankGroup(rank={self.rank}, world_size={self.world_size}, "
                f"backend={self.backend!r}, device={str(self.device)!r})")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # ---------------------------------------------------------------- accounting
    def _count(self, tag: str, nbytes: int, seconds: float) -> None:
        s = self.stats.setdefault(tag, {"calls": 0, "bytes_sent": 0, "seconds": 0.0})
        s["calls"] += 1
        s["bytes_sent"] += int(nbytes)
        s["seconds"] += seconds

    def reset_stats(self) -> None:
        self.stats.clear()

    def total_stats(self) -> Dict[str, float]:
        """Sum over tags: calls, bytes this rank sent, seconds spent in collectives."""
        out = {"calls": 0, "bytes_sent": 0, "seconds": 0.0}
        for s in self.stats.values():
            for k in out:
                out[k] += s[k]
        return out

    def _comm_tensor(self, t: torch.Tensor) -> torch.Tensor:
        # Gloo works on CPU tensors, NCCL on the rank's GPU
        dev = self.device if self.backend == "nccl" else torch.device("cpu")
        return t.to(dev).contiguous()

    def _all_gather(self, t: torch.Tensor, tag: str) -> List[torch.Tensor]:
        import torch.distributed as dist
        t = self._comm_tensor(t)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        t0 = time.perf_counter()
        dist.all_gather(out, t)
        self._sync()
        # a ring all-gather sends (W - 1) chunks of this rank's size from every rank
        self._count(tag, (self.world_size - 1) * t.numel() * t.element_size(), time.perf_counter() - t0)
        return out

    def _sync(self) -> None:
        if self.backend == "nccl":  # NCCL calls return at launch; time their completion
            torch.cuda.synchronize(self.device)

    # ---------------------------------------------------------------- collectives
    def all_gather_rows(self, X: Optional[torch.Tensor], T: Optional[torch.Tensor] = None,
                        tag: str = "bank", step: int = -1
                        ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], int]:
        """Every rank's rows ``X`` (b_r, D) (and prompt rows ``T`` (b_r, e)) in rank order.

        Ranks may hold different numbers of rows, zero included (``X=None``: nothing this
        round). Returns ``(X_all, T_all, start)``: this rank's rows are
        ``X_all[start:start + b]``; ``(None, None, 0)`` when no rank had rows. Two
        collectives: a header (rows, D, e, tag, step), then the rows padded to the largest
        count, as one float32 tensor. Every rank must make the same calls in the same order
        (same ``tag`` and ``step``); a rank that does not makes every rank raise.
        """
        b = 0 if X is None else int(X.shape[0])
        if not self.distributed:
            return X, T, 0
        if X is not None and (X.ndim != 2 or (T is not None and (T.ndim != 2 or T.shape[0] != b))):
            raise ValueError("all_gather_rows needs X (b, D) and T (b, e) with the same b")
        D = -1 if X is None else int(X.shape[1])
        e = -1 if (X is None or T is None) else int(T.shape[1])
        head = torch.stack(self._all_gather(
            torch.tensor([b, D, e, _OPS.get(tag, 0), int(step)], dtype=torch.int64), tag)).cpu()
        if bool((head[:, 3:] != head[0, 3:]).any()):
            raise RuntimeError(f"ranks are at different exchanges (tag, step per rank: {head[:, 3:].tolist()}); "
                               "the processes ran different schedules (same model, scheduler and steps needed)")
        counts = head[:, 0].tolist()
        if max(counts) == 0:
            return None, None, 0
        have = head[head[:, 0] > 0]
        D_all, e_all = int(have[0, 1]), int(have[0, 2])
        if bool((have[:, 1] != D_all).any()) or bool((have[:, 2] != e_all).any()):
            raise RuntimeError(f"ranks disagree on feature sizes (rows, D, e per rank: {head[:, :3].tolist()}); "
                               "every process must run the same model and guidance")
        width = D_all + max(e_all, 0)
        out_dev = X.device if X is not None else self.device
        dev = self.device if self.backend == "nccl" else torch.device("cpu")
        payload = torch.zeros(max(counts), width, dtype=torch.float32, device=dev)
        if b:
            payload[:b, :D_all] = X.detach().to(dev, torch.float32)
            if e_all > 0:
                payload[:b, D_all:] = T.detach().to(dev, torch.float32)
        parts = self._all_gather(payload, tag)
        rows = torch.cat([p[:c] for p, c in zip(parts, counts)]).to(out_dev)
        start = int(sum(counts[: self.rank]))
        return rows[:, :D_all], (rows[:, D_all:] if e_all > 0 else None), start

    def all_reduce_sum_(self, tensors: Sequence[torch.Tensor], tag: str = "bank") -> None:
        """Sum each tensor over ranks, in place (every rank gets the same result)."""
        if not self.distributed:
            return
        import torch.distributed as dist
        for t in tensors:
            c = self._comm_tensor(t)
            t0 = time.perf_counter()
            dist.all_reduce(c, op=dist.ReduceOp.SUM)
            self._sync()
            # ring all-reduce: each rank sends 2 (W - 1) / W of the tensor
            nbytes = 2 * (self.world_size - 1) * c.numel() * c.element_size() // self.world_size
            self._count(tag, nbytes, time.perf_counter() - t0)
            if c.data_ptr() != t.data_ptr():
                t.copy_(c.to(t.device))

    def gather_floats(self, values: Sequence[float], tag: str = "control") -> torch.Tensor:
        """(world_size, len(values)) float64: each rank's values; doubles as a barrier."""
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if not self.distributed:
            return t[None]
        return torch.stack(self._all_gather(t, tag)).cpu()

    def barrier(self) -> None:
        self.gather_floats([0.0])

    def check_same(self, values: Sequence[float], what: str, rtol: float = 0.0) -> None:
        """Raise if any rank holds other ``values`` (e.g. a digest of its bank) than rank 0."""
        allv = self.gather_floats(values)
        ref = allv[0]
        bad = [r for r in range(len(allv))
               if not torch.allclose(allv[r], ref, rtol=rtol, atol=0.0, equal_nan=True)]
        if bad:
            raise RuntimeError(f"{what} differs between ranks {bad} and rank 0 "
                               f"({allv[bad[0]].tolist()} vs {ref.tolist()}); the processes have diverged")

    def shard(self, items: Sequence) -> list:
        """This rank's contiguous share of one round's ``items``, in rank order; shares
        differ by at most one (a rank is idle only when there are fewer items than ranks)."""
        q, r = divmod(len(items), self.world_size)
        start = self.rank * q + min(self.rank, r)
        return list(items[start:start + q + (self.rank < r)])


def init_distributed(backend: Optional[str] = None, sketch_sync: str = "rows",
                     timeout_s: float = 1800.0) -> RankGroup:
    """The :class:`RankGroup` of this process, from the environment torchrun sets.

    Outside torchrun (or with one process) a group of one. ``backend``: ``"nccl"`` when CUDA
    is available, else ``"gloo"``; with NCCL each rank uses GPU ``LOCAL_RANK``.
    """
    if not launched_by_torchrun():
        return RankGroup(sketch_sync=sketch_sync)
    import torch.distributed as dist
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run on one process")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be 'nccl' or 'gloo', got {backend!r}")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise RuntimeError("the NCCL backend needs CUDA GPUs; use backend='gloo' on CPUs")
        device = torch.device("cuda", local_rank % torch.cuda.device_count())  # one visible GPU each, or all
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        kw = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kw)
    return RankGroup(dist.get_rank(), dist.get_world_size(), local_rank, backend, device, sketch_sync)


def shutdown() -> None:
    """Leave the process group (call once at the end of a torchrun job)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
