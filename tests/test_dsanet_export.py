"""DSANet export: a traced (TorchScript) and a ``torch.export``-ed small DSANet reproduce the eager output."""

from __future__ import annotations

import io

import pytest
import torch

from usseg_models.networks import build_network


@pytest.fixture(scope="module")
def model_and_input():
    torch.manual_seed(0)
    model = build_network("dsanet", "small").eval()
    x = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    return model, x, expected


def test_torchscript_trace_round_trip_matches_eager(model_and_input):
    model, x, expected = model_and_input
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    other = torch.randn_like(x)  # a different input than the one traced with
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(loaded(other), model(other), rtol=1e-4, atol=1e-4)


def test_torch_export_matches_eager(model_and_input):
    model, x, expected = model_and_input
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        got = exported.module()(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
