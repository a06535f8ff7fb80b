"""benchmarks/gpu_check.py on a machine without a CUDA GPU: it stops at once and says why."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: run the check itself")
def test_gpu_check_exits_at_once_without_a_gpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "no CUDA GPU is visible" in res.stderr and "nothing was run" in res.stderr
    assert not out.exists()
    # it stopped before building any pipeline
    assert "[gpu_check]" not in res.stdout
