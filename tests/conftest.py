"""Shared pytest fixtures.

Real ultrasound data lives beside the project in ``../shared/data`` (never copied into the repository);
tests that need it use the ``shared_data`` fixture and are skipped with a reason where it is absent.

The shared real servers are session fixtures in two plugin modules registered here: ``app_server_fixtures``
(``server``, ``client``, ``cine_id``, ``image_png``, ``image_dcm``: the app on the sample studies, for the
``test_app_server*`` modules; a module that needs a server of its own defines its own ``server``) and
``app_auth_fixtures`` (``issuer``, ``auth_server``, ``url``, ``tokens``, ...: authentication on); and
``bootstrap_fixtures`` (``bootstrapped``: a fresh app that trained itself on the sample studies, whose published
checkpoints other tests start from).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel run: every process this worker starts (servers, their training subprocesses, CLI runs) uses one
    # OpenMP thread. Two workers' processes with two spinning OpenMP threads each on two cores made epochs 18x slower.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

pytest_plugins = ("app_server_fixtures", "app_auth_fixtures", "bootstrap_fixtures", "mrml_support", "xdist_groups")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("USSEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared ultrasound data not found at {SHARED_DATA} (set USSEG_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def us_dicom_dir(shared_data: Path) -> Path:
    return shared_data / "us_dicom"


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    """One intra-op thread: on shared 2-core machines two threads made forward passes many times slower."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def refine_base_model():
    """A small DSANet trained for a few epochs on two sector chamber cines (about 15 s on 2 CPU cores); the base
    the refinement tests adapt (tests/test_refine.py, tests/test_refine_hybrid.py)."""
    import torch

    from usseg_models.data.synthetic import simulate_cine
    from usseg_models.losses.dsanet_loss import DSANetLoss
    from usseg_models.networks import build_network
    from usseg_models.transforms.clip import window_indices
    from usseg_models.transforms.pipeline import ModelPipeline

    torch.manual_seed(0)
    model = build_network("dsanet", "small")
    clips = [simulate_cine(16, 96, "sector", targets=("chamber",), seed=s) for s in (1, 2)]
    pipe = ModelPipeline("cine", 64)
    data = [(pipe.inputs(c.image), pipe.labels(c.label)) for c in clips]
    windows = [(i, window_indices(16, t)) for i in range(len(data)) for t in range(16)]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = DSANetLoss()
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(120):
        pick = rng.integers(0, len(windows), 4)
        x = torch.stack([data[windows[k][0]][0][windows[k][1]] for k in pick])
        y = torch.stack([data[windows[k][0]][1][windows[k][1]] for k in pick])
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return model.eval()
