"""Several processes with one shared bank (Gloo on CPU): collectives, equivalence with one
process, and resuming after a process is killed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sparke_lab.distributed import RankGroup, init_distributed

PY = sys.executable


# ----------------------------------------------------------------- collectives (mp.spawn)
def _collectives_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    g = RankGroup(rank, world, backend="gloo")
    res = {}
    # uneven counts, one rank without rows, prompt rows riding along
    X = None if rank == 1 else torch.full((rank + 1, 3), float(rank))
    T = None if rank == 1 else torch.full((rank + 1, 2), 10.0 + rank)
    Xa, Ta, start = g.all_gather_rows(X, T)
    res["rows"] = Xa[:, 0].tolist()
    res["prompts"] = Ta[:, 0].tolist()
    res["start"] = start
    res["none"] = g.all_gather_rows(None, None)[0] is None
    # the byte count: 5 int64 header + padded (3 x 5) float32 payload, (W - 1) chunks each
    res["bytes"] = g.stats["bank"]["bytes_sent"]
    # all-reduce gives every rank the same sum
    t = torch.tensor([1.0 + rank, 2.0])
    g.all_reduce_sum_([t])
    res["sum"] = t.tolist()
    # feature sizes that disagree are refused on every rank
    try:
        g.all_gather_rows(torch.zeros(1, 3 + rank))
        res["mismatch"] = "no error"
    except RuntimeError as exc:
        res["mismatch"] = str(exc)
    # ranks at different exchanges (another step) are refused on every rank
    try:
        g.all_gather_rows(torch.zeros(1, 3), tag="peers", step=rank)
        res["schedule"] = "no error"
    except RuntimeError as exc:
        res["schedule"] = str(exc)
    # diverged state is caught
    try:
        g.check_same([1.0, float(rank == 2)], "the bank")
        res["diverged"] = "no error"
    except RuntimeError as exc:
        res["diverged"] = str(exc)
    g.check_same([5.0, 6.0], "a digest")  # equal: no error
    Path(out_dir, f"{rank}.json").write_text(json.dumps(res))
    dist.destroy_process_group()


def test_collectives_with_uneven_and_empty_ranks(tmp_path):
    world = 3
    mp.spawn(_collectives_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world)
    res = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(world)]
    for r, x in enumerate(res):
        assert x["rows"] == [0.0, 2.0, 2.0, 2.0]        # rank order; rank 1 had none
        assert x["prompts"] == [10.0, 12.0, 12.0, 12.0]
        assert x["none"] is True
        assert x["sum"] == [6.0, 6.0]
        assert "disagree on feature sizes" in x["mismatch"]
        assert "ranks [2]" in x["diverged"]
        assert "different exchanges" in x["schedule"]
        assert x["bytes"] == 2 * (5 * 8 + 3 * 5 * 4) + 2 * 5 * 8  # two calls; the second has no rows
    assert [x["start"] for x in res] == [0, 1, 1]


def test_single_process_group_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    g = init_distributed()
    assert g.world_size == 1 and g.is_main and not g.distributed
    X = torch.ones(2, 3)
    assert g.all_gather_rows(X)[0] is X
    g.check_same([1.0], "x")
    assert g.shard(list(range(5))) == [0, 1, 2, 3, 4] and g.stats == {}
    assert RankGroup(1, 2).shard(list(range(5))) == [3, 4]
    assert RankGroup(2, 3).shard([0, 1]) == []          # an idle rank in the last round
    assert [RankGroup(r, 4).shard(list(range(5))) for r in range(4)] == [[0, 1], [2], [3], [4]]
    with pytest.raises(ValueError, match="sketch_sync"):
        RankGroup(sketch_sync="all")
    with pytest.raises(ValueError, match="bad rank"):
        RankGroup(2, 2)


# ------------------------------------------- the guidance does not depend on the split
def _guidance_cases():
    """(name, make callback, step) for every coupled method; identical on every process."""
    from sparke_lab.guidance import (MemoryBank, ParticleGuidance, SketchBank, SparkeGuidance,
                                     VendiGuidance)
    g = torch.Generator().manual_seed(7)
    Xb = torch.nn.functional.normalize(torch.randn(12, 256, generator=g), dim=1)
    Tb = torch.eye(4)[torch.arange(12) % 4] + 0.05 * torch.randn(12, 4, generator=g)
    sketch = SketchBank(0.5, 0.3, n_features=256, seed=3)
    sketch.add(Xb, Tb)
    return [
        ("sparke", lambda: SparkeGuidance(sigma_image=0.5, scale=0.1, every=1, bank=MemoryBank.from_features(Xb, Tb))),
        ("sparke, no in-batch term", lambda: SparkeGuidance(sigma_image=0.5, scale=0.1, every=1, in_batch=False,
                                                            bank=MemoryBank.from_features(Xb, Tb))),
        ("latent rke, plain step", lambda: SparkeGuidance(objective="rke", sigma_image=0.5, scale=0.1, every=1,
                                                          normalize="none", bank=MemoryBank.from_features(Xb, Tb))),
        ("cosine kernel", lambda: SparkeGuidance(kernel="cosine", scale=0.1, every=1,
                                                 bank=MemoryBank.from_features(Xb, Tb))),
        ("sketch bank", lambda: SparkeGuidance(sigma_image=0.5, scale=0.1, every=1, bank=sketch)),
        ("vendi", lambda: VendiGuidance(sigma_image=0.5, scale=0.1, every=1, bank=MemoryBank.from_features(Xb, Tb))),
        ("particle guidance", lambda: ParticleGuidance(scale=0.1, every=1)),
    ]


def _guide(cb, latents, T, group=None):
    cb.group = group
    if hasattr(cb, "set_prompt_features"):
        cb.set_prompt_features(T)
    out = cb.apply(None, 0, 10, None, {"latents": latents.clone()})["latents"]
    return out


def _round_worker(rank, world, init_file, out_dir, latents, T):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    group = RankGroup(rank, world, backend="gloo")
    mine = group.shard(list(range(len(latents))))
    res = {name: _guide(make(), latents[mine], T[mine], group) for name, make in _guidance_cases()}
    torch.save(res, Path(out_dir, f"{rank}.pt"))
    dist.destroy_process_group()


def test_guidance_of_a_round_does_not_depend_on_its_split(tmp_path):
    """W processes and one process with the whole round compute the same guided latents, to the
    bit: every rank evaluates the objective of the whole gathered round (one process's shapes
    and reduction order) and keeps its own rows."""
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(5, 4, 8, 8, generator=g)
    T = torch.eye(4)[torch.tensor([0, 1, 0, 2, 1])]
    world = 2
    mp.spawn(_round_worker, args=(world, str(tmp_path / "init"), str(tmp_path), latents, T), nprocs=world)
    parts = [torch.load(tmp_path / f"{r}.pt") for r in range(world)]
    torch.set_num_threads(1)
    for name, make in _guidance_cases():
        ref = _guide(make(), latents, T)
        assert not torch.equal(ref, latents), name                    # guidance acted
        assert torch.equal(torch.cat([p[name] for p in parts]), ref), name


# ----------------------------------------------------------------- the command under torchrun
PROMPTS = "an odd digit\na handwritten three\nan even digit\n"


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


STEPS = 10  # the recommended digits SPARKE guides at steps 0, 2 (window: first 40 %)


def _compare_args(prompts, out, methods, per_prompt, batch, extra=()):
    # --batch-invariant: the model runs one sample at a time, so its round-off does not depend
    # on the batch size (convolutions pick their algorithm by batch size) and the runs below
    # can be compared to the bit
    return ["-m", "sparke_lab.cli", "compare", "--prompts", str(prompts), "--methods", methods,
            "--per-prompt", str(per_prompt), "--steps", str(STEPS), "--batch-size", str(batch), "--out", str(out),
            "--no-eval", "--no-progress", "--batch-invariant", *extra]


def _torchrun(nproc, args):
    return [PY, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "--max-restarts=0", *args]


def _run(cmd, timeout=900):  # a hang guard only: process start-up alone takes minutes on a loaded 2-core machine
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def _samples(out, method):
    from PIL import Image
    mdir = Path(out) / "samples" / method
    man = json.loads((mdir / "manifest.json").read_text())
    idx = [i for r in man["rounds"] for i in r["indices"]]
    imgs = {i: np.asarray(Image.open(mdir / f"{i:06d}.png")).astype(int) for i in idx}
    return idx, imgs, man


def _bank(out, method):
    from sparke_lab.guidance import load_bank
    mdir = Path(out) / "samples" / method
    return load_bank(mdir / json.loads((mdir / "manifest.json").read_text())["bank"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same job on 2 Gloo processes (batch 1 each) and on 1 process with batch 2."""
    d = tmp_path_factory.mktemp("dist")
    (d / "p.txt").write_text(PROMPTS)
    methods = "sparke,pg,cads"
    _run(_torchrun(2, _compare_args(d / "p.txt", d / "w2", methods, 3, 1)))
    _run([PY, *_compare_args(d / "p.txt", d / "w1", methods, 3, 2)])
    _run(_torchrun(2, _compare_args(d / "p.txt", d / "w2s", "sparke", 3, 1,
                                    ["--bank", "sketch", "--sketch-sync", "sum"])))
    _run([PY, *_compare_args(d / "p.txt", d / "w1s", "sparke", 3, 2, ["--bank", "sketch"])])
    return d


@pytest.mark.parametrize("method", ["sparke", "pg", "cads"])
def test_two_processes_match_one_process_with_twice_the_batch(runs, method):
    """Bit-identical by construction: the model runs per sample (--batch-invariant) and every
    rank computes the guidance of the whole round, so no result depends on the split."""
    i2, im2, man2 = _samples(runs / "w2", method)
    i1, im1, man1 = _samples(runs / "w1", method)
    assert sorted(i2) == sorted(i1) == list(range(9))          # nothing lost, nothing twice
    assert [r["indices"] for r in man2["rounds"]] == [r["indices"] for r in man1["rounds"]]
    assert all(r["processes"] == 2 for r in man2["rounds"])
    assert all(np.array_equal(im2[i], im1[i]) for i in i1)
    assert [r["sha256"] for r in man2["rounds"]] == [r["sha256"] for r in man1["rounds"]]
    if method == "sparke":
        b2, b1 = _bank(runs / "w2", method), _bank(runs / "w1", method)
        assert len(b2) == len(b1) == 9
        assert torch.equal(b2.features, b1.features)
        assert torch.equal(b2.prompt_features, b1.prompt_features)
        assert man2["comm_bytes_sent"] > 0


def test_guidance_acts_across_processes(runs):
    """The equivalence is not vacuous: a guided image differs from an unguided one."""
    _, guided, _ = _samples(runs / "w2", "sparke")
    _, pg, _ = _samples(runs / "w2", "pg")
    assert max(np.abs(guided[i] - pg[i]).max() for i in guided) > 20


def test_sketch_bank_all_reduced_sums_match_one_process(runs):
    i2, im2, _ = _samples(runs / "w2s", "sparke")
    i1, im1, _ = _samples(runs / "w1s", "sparke")
    assert max(np.abs(im2[i] - im1[i]).max() for i in i1) <= 2
    b2, b1 = _bank(runs / "w2s", "sparke"), _bank(runs / "w1s", "sparke")
    assert type(b2).__name__ == "SketchBank" and len(b2) == len(b1) == 9
    np.testing.assert_allclose(b2._S.numpy(), b1._S.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b2._M.numpy(), b1._M.numpy(), rtol=1e-4, atol=1e-5)


def _worker_pids(launcher_pid):
    import psutil
    kids = psutil.Process(launcher_pid).children(recursive=True)
    out = {}
    for k in kids:
        try:
            env = k.environ()
        except psutil.Error:
            continue
        if "RANK" in env and "LOCAL_RANK" in env:
            out[int(env["RANK"])] = k.pid
    return out


@pytest.fixture(scope="module")
def resume_reference(runs):
    """The killed jobs' reference: one process, uninterrupted, with the whole round as its batch."""
    ref = runs / "ref"
    _run([PY, *_compare_args(runs / "p.txt", ref, "sparke", 6, 2)])
    return ref


@pytest.mark.parametrize("victim", [0, 1])
def test_kill_a_rank_then_rerun_resumes_without_loss_or_duplicates(runs, resume_reference, tmp_path, victim):
    out = tmp_path / "job"
    cmd = _torchrun(2, _compare_args(runs / "p.txt", out, "sparke", 6, 1))
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    man = out / "samples" / "sparke" / "manifest.json"
    deadline = time.time() + 900  # a hang guard, as in _run
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if man.exists() and len(json.loads(man.read_text())["rounds"]) >= 2:
            pids = _worker_pids(proc.pid)
            if victim in pids:
                os.kill(pids[victim], signal.SIGKILL)
                killed = True
                break
        time.sleep(0.02)
    log = proc.communicate(timeout=300)[0]
    assert killed, "the job ended before a rank could be killed:\n" + log[-2000:]
    assert proc.returncode != 0
    committed = len(json.loads(man.read_text())["rounds"])
    assert 2 <= committed < 9                                 # 18 samples, 2 per round
    _run(cmd)                                                 # the same command again
    idx, imgs, manifest = _samples(out, "sparke")
    assert sorted(idx) == list(range(18)) and len(idx) == 18
    ref = resume_reference
    ridx, rimgs, _ = _samples(ref, "sparke")
    assert all(np.array_equal(imgs[i], rimgs[i]) for i in ridx)   # to the bit, resume included
    b, rb = _bank(out, "sparke"), _bank(ref, "sparke")
    assert len(b) == len(rb) == 18
    assert torch.equal(b.features, rb.features)
