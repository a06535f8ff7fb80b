"""The comparison runner: methods x prompts -> images and timings -> metrics -> report.

For each method it generates the same prompts with the same per-image seeds (prompts are
interleaved, so a bank sees many prompts), keeps images and timings, and writes
``metrics.csv``, ``metrics.json``, image grids and ``report.html`` into the run folder. The
runner owns the plan, the rounds, resuming and committing; the pipeline and the image
features come from :mod:`sparke_lab.loading`, the metric rows from
:mod:`sparke_lab.evaluation`, the report from :mod:`sparke_lab.report`.

Resumable: work is done in rounds (one batch); each sample is written atomically as a PNG,
then the guidance bank is checkpointed, then the manifest names both (the commit point).
A run interrupted at any moment and started again with the same arguments continues from
the last committed round, with no lost and no duplicated samples.

Several processes (``torchrun``): a round is split over the ranks in rank order, the guidance
exchanges samples through a :class:`~sparke_lab.distributed.RankGroup`, each rank writes its
own samples, rank 0 checkpoints the (identical) bank and commits the round. The round size
(``batch_size``) is the total over processes, so the same folder resumes on any process count.

Used by ``sparke-lab compare`` (and ``make demo``) through :func:`run`; taught in
08_guided_generation_digits.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from .loading import check_features, check_model, feature_extractor, load_model

METHOD_NAMES = ("none", "cfg", "sparke", "sparke-latent", "sparke-clip", "rke", "rke-clip", "vendi",
                "pg", "cads", "interval")
#: ``--sweep``: each method's strengths as multiples of its default (cads: noise scales;
#: interval: the start of the CFG window). ``none`` and ``cfg@w`` run once.
SWEEP = {"sparke": (0.25, 0.5, 1.0, 2.0), "sparke-latent": (0.25, 0.5, 1.0, 2.0),
         "sparke-clip": (0.25, 0.5, 1.0, 2.0), "rke": (0.25, 0.5, 1.0, 2.0),
         "rke-clip": (0.25, 0.5, 1.0, 2.0), "vendi": (0.5, 1.0, 2.0), "pg": (0.5, 1.0, 2.0, 4.0),
         "cads": (0.1, 0.25, 0.5), "interval": (0.1, 0.2, 0.4)}
BANK_KINDS = ("exact", "sketch")


# ------------------------------------------------------------------------ prompts
@dataclass
class PromptSpec:
    """One prompt of a run: its text, its cluster (for prompt-aware metrics) and, for the
    digits model, the digits that are valid answers to it (empty when unknown) and the class
    distribution of its training captions, aligned with ``valid`` (empty when unknown; the
    class-distribution metrics measure the total variation to it)."""
    prompt: str
    cluster: int
    valid: tuple = ()
    weights: tuple = ()


def load_prompt_file(path_or_name: str) -> List[PromptSpec]:
    """Read prompts from a text file (one per line, ``#`` comments), a CSV file with a
    ``prompt`` column and optional ``cluster``, ``valid_digits`` (digits separated by spaces
    or ``;``) and ``class_weights`` columns (the class distribution of the prompt's training
    captions, one weight per valid digit: the class-distribution metrics measure the total
    variation to it), or a shipped digits prompt set by name (``single``, ``broad``, ``mini``,
    ``all``).

    Clusters: integers keep their number; names get the next free numbers in order of
    appearance (never one of the integers); a blank cell, like a file without the column,
    puts the prompt in a cluster of its own."""
    def cluster_id(cell: str):  # an integer id ("3", "3.0"), or None for a name
        try:
            v = float(cell)
        except ValueError:
            return None
        return int(v) if v.is_integer() else None  # False for inf and nan

    p = Path(path_or_name)
    if not p.exists():
        from .models.captions import PROMPT_SETS, load_prompt_set
        if str(path_or_name) in PROMPT_SETS:
            return [PromptSpec(q.prompt, int(q.cluster), tuple(q.valid_digits), tuple(q.class_weights))
                    for q in load_prompt_set(str(path_or_name))]
        raise FileNotFoundError(f"prompt file {p} not found (or use a shipped set: {PROMPT_SETS})")
    text = p.read_text(encoding="utf-8")
    out: List[PromptSpec] = []
    if p.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows:
            raise ValueError(f"{p}: no rows; a CSV prompt file needs a header with a 'prompt' column")
        if "prompt" not in rows[0]:
            raise ValueError(f"{p}: no 'prompt' column (columns: {list(rows[0])})")
        cells = [(r.get("cluster") or "").strip() for r in rows]
        ints = [c for c in map(cluster_id, cells) if c is not None]
        next_free = max(ints) + 1 if ints else 0
        names: Dict[str, int] = {}
        for i, (r, c) in enumerate(zip(rows, cells), start=2):
            prompt = (r.get("prompt") or "").strip()
            if not prompt:
                raise ValueError(f"{p}, line {i}: empty prompt")
            cluster = cluster_id(c) if c else None
            if cluster is None:
                if c and c in names:
                    cluster = names[c]
                else:  # a new name, or a blank cell: the next number no other cluster uses
                    cluster, next_free = next_free, next_free + 1
                    if c:
                        names[c] = cluster
            v = (r.get("valid_digits") or "").replace(";", " ").split()
            try:
                valid = tuple(int(d) for d in v)
            except ValueError:
                raise ValueError(f"{p}, line {i}: valid_digits must be integers, got {r.get('valid_digits')!r}") from None
            w = (r.get("class_weights") or "").replace(";", " ").split()
            try:
                weights = tuple(float(x) for x in w)
            except ValueError:
                raise ValueError(f"{p}, line {i}: class_weights must be numbers, got {r.get('class_weights')!r}") from None
            if weights and (len(weights) != len(valid) or min(weights) < 0 or abs(sum(weights) - 1) > 1e-6):
                raise ValueError(f"{p}, line {i}: class_weights must be {len(valid)} non-negative numbers "
                                 f"summing to 1 (one per valid digit, in the same order), got {r.get('class_weights')!r}")
            out.append(PromptSpec(prompt, cluster, valid, weights))
    else:
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(PromptSpec(line, len(out)))
    if not out:
        raise ValueError(f"{p}: no prompts found")
    return out


# ------------------------------------------------------------------------ methods
def parse_methods(spec: str, sweep: bool = False, family: str = "digits") -> List[str]:
    """``"none,sparke,sparke@0.2,pg"`` -> method names; ``name@scale`` sets the scale
    (``cfg@w``: no guidance at CFG ``w``, e.g. the low-CFG reference of lost spread;
    ``interval@s``: CFG only after the first fraction ``s`` of the run; ``cads@s``: CADS
    noise scale ``s``). ``sweep``: every method without a scale becomes a small grid of
    strengths (:data:`SWEEP`) so that methods are compared along their fidelity-diversity
    frontiers, at matched fidelity, not at one strength each."""
    names = [m.strip() for m in spec.split(",") if m.strip()]
    if not names:
        raise ValueError("no methods given")
    for m in names:
        base, _, scale = m.partition("@")
        if base not in METHOD_NAMES:
            raise ValueError(f"unknown method {base!r}; choose from {METHOD_NAMES} (name@scale sets a scale)")
        if scale:
            try:
                float(scale)
            except ValueError:
                raise ValueError(f"bad scale in {m!r}") from None
        if base == "cfg" and not scale:
            raise ValueError("'cfg' needs a guidance scale: cfg@1.5 runs without guidance at CFG 1.5")
    if sweep:
        out = []
        for m in names:
            base, _, scale = m.partition("@")
            if scale or base not in SWEEP:
                out.append(m)
                continue
            default = default_strength(base, family)
            out += [f"{base}@{_round(default * k)}" if base not in ("cads", "interval") else f"{base}@{k:g}"
                    for k in SWEEP[base]]
        names = out
    if len(set(names)) != len(names):
        raise ValueError(f"a method is listed twice: {names}")
    return names


def _round(x: float) -> str:
    return f"{float(f'{x:.3g}'):g}"


def default_strength(base: str, family: str) -> float:
    """The default scale of a guidance method (its recommended setting for ``family``)."""
    cb = make_callback(base, family, 7.0)
    return float(getattr(cb, "scale", 1.0))


def make_callback(method: str, family: str, cfg: float, bank: str = "exact"):
    """The guidance callback of a method name (None for no guidance); ``bank="sketch"``
    gives SPARKE / latent RKE a random-feature sketch bank instead of the exact one."""
    from . import guidance as G
    base, _, scale = method.partition("@")
    kw = {} if not scale else {"scale": float(scale)}
    if base in ("none", "cfg"):
        return None
    if base.startswith(("sparke", "rke")):
        kind, _, variant = base.partition("-")
        fam = family if family in G.RECOMMENDED else "stable-diffusion"
        if variant:
            fam = f"{fam}-{variant}"
            if fam not in G.RECOMMENDED:
                raise ValueError(f"no recommended {variant} settings for this model; use sparke or rke")
        if bank == "sketch":
            kw["bank"] = "sketch"
        return G.SparkeGuidance.recommended(fam, objective="cond-rke" if kind == "sparke" else "rke", **kw)
    if base == "vendi":
        return G.VendiGuidance(**kw)
    if base == "pg":
        return G.ParticleGuidance(**kw)
    if base == "cads":
        return G.CADS(**({"noise_scale": float(scale)} if scale else {}))
    if base == "interval":
        return G.IntervalGuidance(guidance_scale=cfg, **({"interval": (float(scale), 1.0)} if scale else {}))
    raise ValueError(method)


# ------------------------------------------------------------------------ IO helpers
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one temp file per writer process
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_json(path: Path, obj) -> None:
    _atomic_write_bytes(path, json.dumps(obj, indent=2, default=float).encode())


def _sample_name(index: int) -> str:
    return f"{index:06d}.png"


def _save_sample(path: Path, image_u8: np.ndarray) -> None:
    """One image (H, W, C) uint8 as a lossless PNG, written atomically."""
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image_u8[..., 0] if image_u8.shape[-1] == 1 else image_u8).save(buf, format="PNG")
    _atomic_write_bytes(path, buf.getvalue())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _committed_bytes(path: Path, digest: Optional[str], what: str) -> bytes:
    """The bytes of a committed file, checked against the digest the manifest holds."""
    if not path.is_file():
        raise ValueError(f"{path}: the committed {what} is missing; restore it, or delete "
                         f"{path.parent} to generate this method again")
    data = path.read_bytes()
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"{path}: the committed {what} was changed after it was committed (its "
                         f"SHA-256 differs from {path.parent / 'manifest.json'}); restore it, or delete "
                         f"{path.parent} to generate this method again")
    return data


def _check_committed(mdir: Path, manifest: dict) -> None:
    """Every committed sample (and the bank) is there and unchanged (rounds written before
    digests were kept are checked for presence)."""
    for r in manifest["rounds"]:
        digests = r.get("sha256") or [None] * len(r["indices"])
        for idx, digest in zip(r["indices"], digests):
            _committed_bytes(mdir / _sample_name(idx), digest, f"sample {idx}")
    if manifest.get("bank"):
        _committed_bytes(mdir / manifest["bank"], manifest.get("bank_sha256"), "bank")


def _decode_sample(data: bytes) -> np.ndarray:
    import io
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        a = np.asarray(im)
    return a[..., None] if a.ndim == 2 else a


@dataclass
class RunConfig:
    """Everything that defines a run; a run folder belongs to exactly one configuration.

    ``prompts``: :class:`PromptSpec` s (dicts with the same keys are converted); ``batch_size``:
    the samples of one round over all processes. :meth:`key` is what ``config.json`` holds.
    """
    model: str
    prompts: List[PromptSpec]
    methods: List[str]
    per_prompt: int
    steps: int
    cfg: float
    seed: int
    batch_size: int
    device: str
    dtype: str
    features: str = "auto"
    bank: str = "exact"
    batch_invariant: bool = False

    def __post_init__(self):
        self.prompts = [p if isinstance(p, PromptSpec) else
                        PromptSpec(p["prompt"], int(p["cluster"]), tuple(p.get("valid", ())),
                                   tuple(p.get("weights", ())))
                        for p in self.prompts]

    def key(self) -> dict:
        d = asdict(self)
        d["prompts"] = [dict(prompt=p.prompt, cluster=p.cluster, valid=list(p.valid),
                             **({"weights": list(p.weights)} if p.weights else {}))
                        for p in self.prompts]
        d.pop("device")  # the same run may resume on another device
        if d["bank"] == "exact":
            d.pop("bank")  # folders written before the option existed stay valid
        if not d["batch_invariant"]:
            d.pop("batch_invariant")
        return d

    @property
    def family(self) -> str:
        """The model family whose recommended guidance settings the methods use."""
        return "digits" if self.model == "digits" else "stable-diffusion"

    def validate(self) -> None:
        """Refuse a configuration that would fail or mislead later, before anything is
        written (a typo must not lock the output folder): sizes, ``cfg``, seed, methods and
        their scales, bank kind, device, dtype, model and feature extractor."""
        from .utils import pick_dtype
        for name, value, low in (("per_prompt", self.per_prompt, 2), ("steps", self.steps, 1),
                                 ("batch_size", self.batch_size, 1)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        if not self.prompts:
            raise ValueError("no prompts given")
        try:
            cfg = float(self.cfg)
        except (TypeError, ValueError):
            raise ValueError(f"--cfg must be a number, got {self.cfg!r}") from None
        if not (math.isfinite(cfg) and cfg >= 1.0):
            raise ValueError(f"--cfg must be a finite number >= 1 (1 = no classifier-free guidance), "
                             f"got {self.cfg!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) \
                or not 0 <= self.seed < 2**32:
            raise ValueError(f"--seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.bank not in BANK_KINDS:
            raise ValueError(f"bank must be one of {BANK_KINDS}, got {self.bank!r}")
        parse_methods(",".join(self.methods))
        for m in self.methods:   # a bad scale (sparke@-1) fails here, not after the first method
            try:
                make_callback(m, self.family, cfg, self.bank)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"method {m!r}: {exc}") from None
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"--device {self.device!r} is not a device ({exc})") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: this torch build sees no CUDA GPU; leave --device "
                             "out to use the CPU")
        if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"--device {self.device}: MPS is not available here")
        if self.dtype != "auto":
            pick_dtype(dev, self.dtype, fallback=False)
        check_model(self.model)
        check_features(self.features)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------ the runner
class ComparisonRun:
    """Generate every method's samples (resumably), then compute metrics and the report."""

    def __init__(self, config: RunConfig, out_dir: Path, pipe=None, progress: bool = True, group=None):
        from .distributed import RankGroup
        config.validate()  # before the first write
        self.cfg = config
        self.out = Path(out_dir)
        self.group = group if group is not None else RankGroup()
        self.progress = progress and self.group.is_main
        self._pipe = pipe
        error = None
        if self.group.is_main:
            try:
                self._check_folder()
            except (ValueError, OSError) as exc:
                error = exc
        # the other ranks wait for rank 0's folder check and share its verdict
        if self.group.gather_floats([error is not None])[0, 0]:
            raise error if error is not None else ValueError(f"rank 0 refused the run folder {self.out}")
        if not (self.out / "config.json").exists():
            raise RuntimeError(f"rank {self.group.rank}: {self.out}/config.json is not visible; on several "
                               "machines --out must be on a shared file system")

    # -- set-up -------------------------------------------------------------------
    def _check_folder(self) -> None:
        cfg_path = self.out / "config.json"
        if cfg_path.exists():
            old = json.loads(cfg_path.read_text())
            if old != self.cfg.key():
                diff = sorted(k for k in set(old) | set(self.cfg.key()) if old.get(k) != self.cfg.key().get(k))
                raise ValueError(f"{self.out} holds a run with a different configuration (differs in "
                                 f"{diff}); choose another --out folder (nothing was overwritten)")
        elif self.out.exists() and any(self.out.iterdir()):
            raise ValueError(f"{self.out} exists and is not a sparke-lab run folder; choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        _atomic_json(cfg_path, self.cfg.key())

    @property
    def pipe(self):
        if self._pipe is None:
            dtype = None if self.cfg.dtype == "auto" else self.cfg.dtype
            self._pipe = load_model(self.cfg.model, self.cfg.device, dtype)
        if self.cfg.batch_invariant:
            from .guidance.pipelines import make_batch_invariant
            make_batch_invariant(self._pipe)  # once; later calls see it done
        return self._pipe

    @property
    def family(self) -> str:
        return self.cfg.family

    def sample_plan(self):
        """(prompt index, image index) for every sample, prompts interleaved."""
        n_p = len(self.cfg.prompts)
        return [(i % n_p, i) for i in range(n_p * self.cfg.per_prompt)]

    def rounds(self):
        """The plan cut into rounds of ``batch_size`` samples (all processes together)."""
        plan, bs = self.sample_plan(), self.cfg.batch_size
        return [plan[s:s + bs] for s in range(0, len(plan), bs)]

    def method_dir(self, method: str) -> Path:
        return self.out / "samples" / method.replace("@", "_at_")

    # -- generation ---------------------------------------------------------------
    def generate_method(self, method: str) -> None:
        """Generate ``method``'s samples round by round from the last committed round on;
        each round is written, then committed (:meth:`_commit_round`)."""
        from tqdm.auto import tqdm
        from . import guidance as G
        group = self.group
        mdir = self.method_dir(method)
        if group.is_main:
            mdir.mkdir(parents=True, exist_ok=True)
        group.barrier()
        man_path = mdir / "manifest.json"
        manifest = _read_manifest(man_path) if man_path.exists() else \
            {"format": MANIFEST_FORMAT, "rounds": [], "bank": None}
        rounds = self.rounds()
        done = len(manifest["rounds"])
        group.check_same([done], f"the number of committed {method} rounds (the run folder, as each process sees it)")
        self._check_resume(method, mdir, manifest)
        if done >= len(rounds):
            return
        callback = make_callback(method, self.family, self.cfg.cfg, self.cfg.bank)
        bank = getattr(callback, "bank", None)
        if bank is not None and manifest.get("bank"):
            # state as of the last committed round, where the pipeline computes
            callback.bank = bank = G.load_bank(mdir / manifest["bank"], device=self.cfg.device)
        if callback is not None:
            callback.group = group
        pipe = self.pipe
        comm0 = group.total_stats()
        bar = tqdm(total=len(rounds), initial=done, desc=f"{method:>12}", disable=not self.progress)
        for r in range(done, len(rounds)):
            items = group.shard(rounds[r])
            t0 = time.perf_counter()
            bad = []
            if items:
                bad = self._write_samples(pipe, callback, items, mdir, method)
            elif callback is not None:
                callback.idle_round(_steps_per_call(pipe, self.cfg.steps))
            seconds = time.perf_counter() - t0
            # every rank has written its samples (and holds the same bank size) before rank 0 commits
            info = group.gather_floats([seconds, len(bad), bad[0] if bad else -1]
                                       + ([] if bank is None else [len(bank), bank.total_added]))
            if info[:, 1].sum() > 0:
                first = int(info[info[:, 1] > 0][0, 2])
                raise ValueError(f"{method}: {int(info[:, 1].sum())} of the {len(rounds[r])} images of round {r} "
                                 f"are NaN/Inf (the first: sample {first}), so the model diverged (a very large "
                                 f"--cfg or guidance scale, or half-precision overflow?). The run stops; "
                                 f"nothing of this round was committed (the {r} rounds before are kept)")
            if bool((info[:, 3:] != info[0, 3:]).any()):
                raise RuntimeError(f"the {method} banks differ in size between processes ({info[:, 3:].tolist()}); "
                                   f"round {r} is not committed")
            if group.is_main:
                comm0 = self._commit_round(mdir, manifest, rounds[r], r, float(info[:, 0].max()), bank, comm0)
            bar.update(1)
        bar.close()
        if bank is not None:
            group.check_same(bank.digest(), f"the {method} bank")

    def _write_samples(self, pipe, callback, items, mdir: Path, method: str) -> list:
        """Generate this process's share ``items`` of a round (fixed per-image seeds) and
        write each image as a PNG; returns the indices of non-finite images (then none is
        written: a NaN image would save as black)."""
        from . import guidance as G
        prompts = [self.cfg.prompts[pi].prompt for pi, _ in items]
        seeds = [self.cfg.seed * 1_000_003 + idx for _, idx in items]
        gens = [torch.Generator("cpu").manual_seed(x) for x in seeds]
        if hasattr(callback, "set_sample_seeds"):  # CADS: noise per sample, not per batch
            callback.set_sample_seeds([(1 << 40) + x for x in seeds])
        imgs = np.asarray(G.generate(pipe, prompts, callback, batch_size=len(prompts),
                                     num_inference_steps=self.cfg.steps,
                                     guidance_scale=self.method_cfg(method), generator=gens,
                                     output_type="np", progress=False))
        finite = np.isfinite(imgs.reshape(len(imgs), -1)).all(1)
        bad = [idx for (_, idx), ok in zip(items, finite) if not ok]
        if not bad:
            u8 = np.clip(np.round(imgs * 255), 0, 255).astype(np.uint8)
            for (_, idx), im in zip(items, u8):
                _save_sample(mdir / _sample_name(idx), im)
        return bad

    def _check_resume(self, method: str, mdir: Path, manifest: dict) -> None:
        """Rank 0 checks that every committed sample (and the bank) is there and unchanged;
        every rank shares its verdict (a collective)."""
        error = None
        if self.group.is_main and manifest["rounds"]:
            try:
                _check_committed(mdir, manifest)  # resume only from what was committed
            except ValueError as exc:
                error = exc
        if self.group.gather_floats([error is not None])[0, 0]:
            raise error if error is not None else ValueError(f"rank 0 found changed or missing {method} samples")

    def _commit_round(self, mdir: Path, manifest: dict, items, r: int, seconds: float, bank, comm0) -> dict:
        """Rank 0: save the bank (alternating files, so the committed one is never
        overwritten), then write the manifest naming the round's samples with their digests
        and the bank (the commit point). Returns the communication totals so far."""
        bank_name = None
        if bank is not None and len(bank):
            bank_name = f"bank_{r % 2}.safetensors"
            bank.save(mdir / bank_name)
            manifest["bank_sha256"] = _sha256(mdir / bank_name)
        manifest["rounds"].append({"indices": [idx for _, idx in items], "seconds": seconds,
                                   "n": len(items), "processes": self.group.world_size,
                                   "sha256": [_sha256(mdir / _sample_name(idx)) for _, idx in items]})
        manifest["bank"] = bank_name
        manifest["peak_rss_mb"] = max(manifest.get("peak_rss_mb", 0.0), _peak_rss_mb())
        if torch.cuda.is_available():
            manifest["peak_gpu_mb"] = max(manifest.get("peak_gpu_mb", 0.0),
                                          torch.cuda.max_memory_allocated() / 2**20)
        comm = self.group.total_stats()
        manifest["comm_bytes_sent"] = manifest.get("comm_bytes_sent", 0) + comm["bytes_sent"] - comm0["bytes_sent"]
        manifest["comm_seconds"] = manifest.get("comm_seconds", 0.0) + comm["seconds"] - comm0["seconds"]
        _atomic_json(mdir / "manifest.json", manifest)
        return comm

    def load_samples(self, method: str):
        """(images uint8 (n,H,W,C) ordered by image index, seconds per sample, manifest)."""
        mdir = self.method_dir(method)
        manifest = _read_manifest(mdir / "manifest.json")
        digest = {i: d for r in manifest["rounds"]
                  for i, d in zip(r["indices"], r.get("sha256") or [None] * len(r["indices"]))}
        idx = sorted(i for r in manifest["rounds"] for i in r["indices"])
        if len(set(idx)) != len(idx):
            raise RuntimeError(f"{mdir}/manifest.json lists a sample twice")
        images = np.stack([_decode_sample(_committed_bytes(mdir / _sample_name(i), digest[i], f"sample {i}"))
                           for i in idx])
        secs = sum(r["seconds"] for r in manifest["rounds"]) / max(len(idx), 1)
        return images, secs, manifest

    def run(self, evaluate: bool = True) -> Dict[str, dict]:
        """Generate every method, then (rank 0 only) compute metrics and the report."""
        for method in self.cfg.methods:
            self.generate_method(method)
        if not evaluate or not self.group.is_main:
            return {}
        return self.evaluate()

    # -- evaluation ---------------------------------------------------------------
    def evaluate(self, n_boot: int = 50, match_drop: float = 0.03) -> Dict[str, dict]:
        """The metric row of every method (:class:`~sparke_lab.evaluation.MethodMetrics`),
        ``metrics.csv`` / ``metrics.json``, the matched-fidelity comparison
        (``frontier.json``: each method group's diversity at the unguided fidelity minus
        ``match_drop``, :func:`~sparke_lab.evaluation.matched_fidelity`) and ``report.html``."""
        from .evaluation import MethodMetrics, matched_fidelity
        from .report import write_report
        prompt_idx = np.array([pi for pi, _ in self.sample_plan()])
        first = self.cfg.methods[0]
        metrics = MethodMetrics(self.cfg.prompts, prompt_idx, feature_extractor(self.cfg.model, self.cfg.features),
                                bandwidth_images=lambda: self.load_samples(first)[0], n_boot=n_boot)
        results, per_method = {}, {}
        for method in self.cfg.methods:
            images, secs, manifest = self.load_samples(method)
            row, per_method[method] = metrics.row(method, images, eta=self.method_scale(method))
            row["sec_per_sample"] = secs
            row["peak_rss_mb"] = manifest.get("peak_rss_mb", float("nan"))
            if "peak_gpu_mb" in manifest:
                row["peak_gpu_mb"] = manifest["peak_gpu_mb"]
            results[method] = row
        _write_metrics(self.out, results)
        axes, matched = matched_fidelity(results, {m: per_method[m]["halves"] for m in per_method},
                                         drop=match_drop, n=len(prompt_idx))
        _atomic_json(self.out / "frontier.json", {"axes": axes, "drop": match_drop, "n": len(prompt_idx),
                                                  "rows": matched})
        _atomic_json(self.out / "clusters.json", {m: per_method[m].get("clusters") or {} for m in per_method})
        write_report(self.out, self.cfg, results, per_method, prompt_idx, metrics.sigma, metrics.real,
                     frontier=(axes, matched))
        return results

    def method_cfg(self, method: str) -> float:
        """The classifier-free guidance scale a method samples with (``cfg@w``: ``w``)."""
        base, _, scale = method.partition("@")
        return float(scale) if base == "cfg" else float(self.cfg.cfg)

    def method_scale(self, method: str) -> Optional[float]:
        """The guidance scale eta of a SPARKE / latent RKE / Vendi method, else None."""
        if not method.partition("@")[0].startswith(("sparke", "rke", "vendi")):
            return None
        return float(make_callback(method, self.family, self.cfg.cfg, self.cfg.bank).scale)


def _write_metrics(out: Path, results: Dict[str, dict]) -> None:
    _atomic_json(out / "metrics.json", results)
    cols = []
    for r in results.values():
        cols += [k for k in r if k not in cols]
    with open(out / "metrics.csv.tmp", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in results.values():
            w.writerow(r)
    os.replace(out / "metrics.csv.tmp", out / "metrics.csv")


MANIFEST_FORMAT = 2  # 2: one PNG per sample, rounds list their indices


def _read_manifest(path: Path) -> dict:
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} was written by an older sparke-lab (format "
                         f"{manifest.get('format', 1)}, not {MANIFEST_FORMAT}); delete its run folder or "
                         "choose another --out")
    return manifest


def _steps_per_call(pipe, steps: int) -> int:
    """How many step-end callbacks a pipeline call of ``steps`` steps makes."""
    sched = pipe.scheduler
    try:
        sched.set_timesteps(steps)
    except TypeError:  # schedulers that need more (e.g. flow matching's mu): one call per step
        return int(steps)
    return len(sched.timesteps)


# ------------------------------------------------------------------------ one call
def run(model: str, prompts: List[PromptSpec], methods: List[str], out_dir, *, per_prompt: int = 8,
        steps: int = 25, cfg: float = 7.0, seed: int = 0, batch_size: int = 16,
        device: Optional[str] = None, dtype: Optional[str] = None, features: str = "auto",
        bank: str = "exact", batch_invariant: bool = False, evaluate: bool = True,
        progress: bool = True, backend: Optional[str] = None,
        sketch_sync: str = "rows") -> Optional[Dict[str, dict]]:
    """A whole comparison on this process: what ``sparke-lab compare`` runs.

    Joins the process group (a group of one outside ``torchrun``), generates every method's
    samples resumably into ``out_dir`` (a round is ``batch_size`` samples on each process, so
    a folder resumes on any process count that gives the same round size), leaves the group
    once every rank has generated, then evaluates on rank 0 (metrics and the report).
    ``batch_invariant``: run the model one sample at a time
    (:func:`~sparke_lab.guidance.pipelines.make_batch_invariant`), so results do not depend
    on the process count or batch size, to the bit. Everything is validated before the first
    write. Returns the metric rows on rank 0, ``{}`` there with ``evaluate=False``, None on
    the other ranks.
    """
    from .distributed import init_distributed, shutdown
    from .utils import pick_device
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
    group = init_distributed(backend, sketch_sync=sketch_sync)  # a group of one outside torchrun
    device = device or (str(group.device) if group.backend == "nccl" else str(pick_device(None)))
    config = RunConfig(model=model, prompts=list(prompts), methods=list(methods), per_prompt=per_prompt,
                       steps=steps, cfg=cfg, seed=seed, batch_size=batch_size * group.world_size,
                       device=device, dtype=dtype or "auto", features=features, bank=bank,
                       batch_invariant=bool(batch_invariant))
    comparison = ComparisonRun(config, Path(out_dir), progress=progress, group=group)
    comparison.run(evaluate=False)
    # leave the group only after every rank generated (on an error a rank exits at once and
    # torchrun stops the others); rank 0 evaluates alone afterwards
    group.barrier()
    shutdown()
    if not group.is_main:
        return None
    return comparison.evaluate() if evaluate else {}
