"""sparke_lab.novelty: the official code's reference score against independent formulas, the
sign of its step (towards the reference) and sparke-lab's reference= (away from it)."""
import numpy as np
import pytest
import torch

import sparke_lab as sl
from sparke_lab.guidance import MemoryBank
from sparke_lab.novelty import (OFFICIAL_FAST_PATH_ABOVE, official_reference_direction,
                                official_reference_rke)


def _cluster(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([1.0, 0.0]) + 0.1 * rng.normal(size=(n, 2))


def test_fast_path_is_one_over_the_mean_similarity():
    ref = _cluster(30)
    f = np.array([1.4, 0.3])
    S = np.vstack([ref, f])
    k = np.exp(-((S - f) ** 2).sum(1) / (2 * 0.5 ** 2))
    got = float(official_reference_rke(torch.as_tensor(f), ref, 0.5))
    assert abs(got - 1 / k.mean()) < 1e-12


def test_small_set_path_is_the_rke_of_reference_plus_f():
    ref = _cluster(8)
    f = np.array([1.2, -0.2])
    got = float(official_reference_rke(torch.as_tensor(f), ref, 0.7))
    assert abs(got - sl.rke_score(np.vstack([ref, f]), sigma=0.7)) < 1e-9


def test_conditional_small_path_is_the_joint_rke():
    rng = np.random.default_rng(1)
    ref, T = _cluster(6), rng.normal(size=(6, 3))
    f, t = np.array([1.1, 0.1]), rng.normal(size=3)
    got = float(official_reference_rke(torch.as_tensor(f), ref, 0.5, t=torch.as_tensor(t),
                                       reference_prompts=T, sigma_t=0.8))
    joint = np.hstack([np.vstack([ref, f]) / 0.5, np.vstack([T, t]) / 0.8])   # one Gaussian on [x/sx, t/st]
    assert abs(got - sl.rke_score(joint, sigma=1.0)) < 1e-9


@pytest.mark.parametrize("n_ref", [5, 40])          # small-set and fast path
def test_official_step_attracts_and_sparke_reference_repels(n_ref):
    ref = _cluster(n_ref, seed=2)
    f = np.array([1.5, 0.4])
    toward = (ref.mean(0) - f) / np.linalg.norm(ref.mean(0) - f)
    d = official_reference_direction(f, ref, 0.5).numpy()
    assert abs(np.linalg.norm(d) - 1) < 1e-12 and d @ toward > 0.9
    # the direction is the normalised gradient of -beta R: check against central differences
    obj = lambda x: -2.0 * float(official_reference_rke(torch.as_tensor(x, dtype=torch.float64), ref, 0.5))
    h = 1e-6
    fd = np.array([(obj(f + h * e) - obj(f - h * e)) / (2 * h) for e in np.eye(2)])
    assert np.allclose(official_reference_direction(f, ref, 0.5, beta=2.0).numpy(), fd / np.linalg.norm(fd), atol=1e-6)
    g = sl.SparkeGuidance(objective="rke", features="raw", sigma_image=0.5, in_batch=False,
                          reference=MemoryBank.from_features(ref))
    _, grad, rows = g.loss_and_grad(torch.as_tensor(f[None], dtype=torch.float32))
    assert rows == n_ref and float(-grad[0].double().numpy() @ toward) < 0


def test_fast_path_threshold_and_bad_input():
    assert OFFICIAL_FAST_PATH_ABOVE == {"rke": 20, "cond-rke": 10}
    ref = _cluster(10)
    with pytest.raises(ValueError, match="one feature vector"):
        official_reference_rke(torch.zeros(1, 2), ref, 0.5)
    with pytest.raises(ValueError, match="features but f has"):
        official_reference_rke(torch.zeros(3), ref, 0.5)
    with pytest.raises(ValueError, match="both t and reference_prompts"):
        official_reference_rke(torch.zeros(2), ref, 0.5, t=torch.zeros(3))
    with pytest.raises(ValueError, match="beta"):
        official_reference_direction(np.zeros(2), ref, 0.5, beta=0.0)
    with pytest.raises(ValueError):
        official_reference_rke(torch.zeros(2), ref, 0.0)
