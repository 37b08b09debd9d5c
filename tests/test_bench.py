"""Benchmark CLI on CPU, small configurations, 1 iteration: it runs and prints positive figures (no timing bars)."""

from __future__ import annotations

import json
import re

import pytest

from usseg_models.bench import bench_image_model
from usseg_models.cli.main import main


def _numbers(text: str, unit: str) -> list[float]:
    return [float(m) for m in re.findall(r"([0-9.]+) " + re.escape(unit), text)]


def test_bench_dsanet_cli_prints_fps(capsys):
    code = main(["bench", "dsanet", "--config", "small", "--device", "cpu", "--iters", "1", "--warmup", "0",
                 "--batch", "2", "--frames", "4"])
    assert code == 0
    out = capsys.readouterr().out
    fps = _numbers(out, "frames/s")
    assert len(fps) == 3 and all(v > 0 for v in fps)  # network, clip predictor, streaming
    assert "peak memory (cpu rss)" in out and _numbers(out, "MiB")[0] > 0


def test_bench_intrasense_cli_json(capsys):
    code = main(["bench", "intrasense", "--config", "small", "--device", "cpu", "--iters", "1", "--warmup", "0",
                 "--batch", "2", "--json"])
    assert code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["network"] == "intrasense" and info["spatial_size"] == 64
    assert info["batched_ips"] > 0 and info["single_ips"] > 0 and info["amp_bf16"] is False


def test_bench_bad_arguments(capsys):
    with pytest.raises(ValueError):
        bench_image_model("unet", "small", "cpu", batch=0)
    assert main(["bench", "unet", "--config", "small", "--device", "tpu"]) == 2
    assert "unknown device" in capsys.readouterr().err
