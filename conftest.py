"""Settings for every pytest run of this repository (tests/ and notebooks/)."""
import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` and `make test-notebooks` run one pytest worker per core: each (and the
    # notebook kernels and subprocesses it starts) takes one thread, so two workers never
    # fight over two cores
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)
