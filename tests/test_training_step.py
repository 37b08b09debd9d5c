"""The one optimiser step shared by ``fit`` and clip adaptation."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from usseg_models.training.step import NonFiniteLoss, optimizer_step


def test_a_step_clips_gradient_values_and_steps_the_schedule():
    torch.manual_seed(0)
    layer = nn.Linear(4, 1)
    before = layer.weight.detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    x = torch.full((8, 4), 100.0)  # gradients far above the clip value
    loss = optimizer_step(lambda: layer(x).sum(), optimizer, layer.parameters(), 0.5, torch.device("cpu"),
                          scheduler=scheduler)
    assert isinstance(loss, float)
    # SGD with lr 1 moves each weight by its (clipped) gradient: at most 0.5
    assert torch.allclose((before - layer.weight.detach()).abs(), torch.full_like(before, 0.5))
    assert optimizer.param_groups[0]["lr"] == 0.5


def test_a_non_finite_loss_raises_and_leaves_the_weights():
    layer = nn.Linear(2, 1)
    before = [p.detach().clone() for p in layer.parameters()]
    optimizer = torch.optim.Adam(layer.parameters(), lr=1.0)
    with pytest.raises(NonFiniteLoss) as raised:
        optimizer_step(lambda: layer(torch.ones(1, 2)).sum() * float("nan"), optimizer, layer.parameters(), None,
                       torch.device("cpu"))
    assert raised.value.value != raised.value.value  # NaN
    for p, b in zip(layer.parameters(), before):
        assert torch.equal(p.detach(), b)
