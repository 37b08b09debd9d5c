"""Shared pytest fixtures.

Real ultrasound data lives beside the project in ``../shared/data`` (never copied into the repository);
tests that need it use the ``shared_data`` fixture and are skipped with a reason where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
