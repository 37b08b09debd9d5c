"""Throughput and peak-memory benchmarks for DSANet (frames/s) and IntraSense-Net / UNet (images/s).

Method (both models): random inputs at the configuration's size, ``warmup`` untimed iterations, then ``iters``
timed ones; on CUDA every timing is bracketed by ``torch.cuda.synchronize()`` (the paper's DSANet FPS was taken
without it). On CUDA the model runs under bf16 autocast in channels-last memory format, optionally compiled with
``torch.compile``; on CPU it runs fp32 (``amp=True`` asks for CPU bf16 autocast). Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the process's peak resident set size (``ru_maxrss``) on CPU.

DSANet figures:

- ``network_fps``: ``B`` windows ``(B, 3, C, S, S)`` through the plain forward (each window re-encodes its three
  frames), frames/s = targets segmented per second;
- ``clip_fps``: :meth:`DSANetPredictor.predict_logits` on a cine of ``frames`` frames (each frame's backbone runs
  once, ``B`` targets decoded together), frames/s;
- ``stream_fps``: batch-1 streaming, :meth:`DSANetPredictor.add_frame` one frame at a time, frames/s.

IntraSense-Net / UNet: ``batched_ips`` (images/s at batch ``B``) and ``single_ips`` (batch 1).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

import torch

from usseg_models.networks.factory import build_network, network_spatial_size

__all__ = ["bench_dsanet", "bench_image_model", "format_results"]

logger = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> float:
    """Mean seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def _peak_memory(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        return {"peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20, "memory_kind": "cuda allocated"}
    return {"peak_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "memory_kind": "cpu rss"}


def _prepare(name: str, config: str, device: str, amp: bool | None, compile_model: bool):
    from usseg_models.training.distributed import resolve_device

    dev = resolve_device(device)
    amp = dev.type == "cuda" if amp is None else bool(amp)
    model = build_network(name, config).eval().to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats(dev)
    size = network_spatial_size(name, config)
    info = {"network": name, "config": config, "device": str(dev), "spatial_size": size, "amp_bf16": amp,
            "channels_last": dev.type == "cuda", "compiled": compile_model,
            "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return dev, amp, model, size, info


@torch.inference_mode()
def bench_dsanet(
    config: str = "paper", device: str = "auto", batch: int = 8, iters: int = 10, warmup: int = 3,
    frames: int = 16, compile_model: bool = False, amp: bool | None = None, streaming: bool = True,
) -> dict[str, Any]:
    """Benchmark DSANet (see the module docstring for the three figures).

    Args:
        config: ``"paper"`` (352 px) or ``"small"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch: windows per forward (``network_fps``) and targets decoded together (``clip_fps``).
        iters, warmup: timed and untimed repetitions.
        frames: cine length for ``clip_fps`` and ``stream_fps``.
        compile_model: ``torch.compile`` the forward, ``encode_frame`` and ``decode_from_features``.
        amp: bf16 autocast (default: on for CUDA only).
        streaming: also time batch-1 streaming.

    Raises:
        ValueError: for non-positive ``batch``, ``iters``, ``frames`` or negative ``warmup``.
    """
    if batch < 1 or iters < 1 or frames < 1 or warmup < 0:
        raise ValueError(f"need batch, iters, frames >= 1 and warmup >= 0; got {batch}, {iters}, {frames}, {warmup}")
    from usseg_models.inference.video import DSANetPredictor

    dev, amp, model, size, info = _prepare("dsanet", config, device, amp, compile_model)
    forward = model
    if compile_model:
        forward = torch.compile(model)
        model.encode_frame = torch.compile(model.encode_frame)
        model.decode_from_features = torch.compile(model.decode_from_features)
    x = torch.randn(batch, 3, 3, size, size, device=dev)

    def net() -> None:
        with _autocast(dev, amp):
            forward(x)

    sec = _timed(net, dev, warmup, iters)
    info["network_fps"] = batch / sec
    info["network_ms_per_batch"] = sec * 1e3
    predictor = DSANetPredictor(model, size, device=dev, amp=amp, batch_size=batch)
    clip = torch.randn(frames, 3, size, size, device=dev)
    if dev.type == "cuda":
        clip = clip.contiguous(memory_format=torch.channels_last)
    sec = _timed(lambda: predictor.predict_logits(clip), dev, max(1, warmup // 2), max(1, iters // 2))
    info["clip_fps"] = frames / sec
    info["clip_seconds"] = sec
    if streaming:
        def stream() -> None:
            state = predictor.init_state()
            for f in clip:
                predictor.add_frame(state, f)
                for _ in predictor.propagate(state):
                    pass
            for _ in predictor.propagate(state, flush=True):
                pass

        sec = _timed(stream, dev, max(1, warmup // 2), max(1, iters // 2))
        info["stream_fps"] = frames / sec
    info.update(batch=batch, iters=iters, warmup=warmup, frames=frames, **_peak_memory(dev))
    return info


@torch.inference_mode()
def bench_image_model(
    name: str = "intrasense", config: str = "paper", device: str = "auto", batch: int = 32, iters: int = 10,
    warmup: int = 3, compile_model: bool = False, amp: bool | None = None,
) -> dict[str, Any]:
    """Benchmark IntraSense-Net (or ``name="unet"``): images/s batched and at batch 1, and peak memory.

    Raises:
        ValueError: for non-positive ``batch``/``iters`` or negative ``warmup``.
    """
    if batch < 1 or iters < 1 or warmup < 0:
        raise ValueError(f"need batch, iters >= 1 and warmup >= 0; got {batch}, {iters}, {warmup}")
    dev, amp, model, size, info = _prepare(name, config, device, amp, compile_model)
    forward = torch.compile(model) if compile_model else model
    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    xb = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=fmt)
    x1 = xb[:1].contiguous(memory_format=fmt)

    def run(x: torch.Tensor) -> Callable[[], None]:
        def fn() -> None:
            with _autocast(dev, amp):
                forward(x)
        return fn

    sec = _timed(run(xb), dev, warmup, iters)
    info["batched_ips"] = batch / sec
    info["batched_ms"] = sec * 1e3
    sec = _timed(run(x1), dev, warmup, iters)
    info["single_ips"] = 1 / sec
    info["single_ms"] = sec * 1e3
    info.update(batch=batch, iters=iters, warmup=warmup, **_peak_memory(dev))
    return info


def format_results(info: dict[str, Any]) -> str:
    """Human-readable lines for the CLI."""
    head = (f"{info['network']} ({info['config']}, {info['spatial_size']} px, {info['parameters_m']:.1f} M params) "
            f"on {info.get('gpu', info['device'])}: bf16={info['amp_bf16']} channels_last={info['channels_last']} "
            f"compiled={info['compiled']}")
    lines = [head]
    if "network_fps" in info:
        lines.append(f"  network forward, batch {info['batch']} windows: {info['network_fps']:.2f} frames/s "
                     f"({info['network_ms_per_batch']:.1f} ms/batch)")
        lines.append(f"  clip predictor, {info['frames']} frames (backbone once per frame): "
                     f"{info['clip_fps']:.2f} frames/s ({info['clip_seconds']:.3f} s/clip)")
        if "stream_fps" in info:
            lines.append(f"  streaming, batch 1: {info['stream_fps']:.2f} frames/s")
    if "batched_ips" in info:
        lines.append(f"  batch {info['batch']}: {info['batched_ips']:.2f} images/s ({info['batched_ms']:.1f} ms/batch)")
        lines.append(f"  batch 1: {info['single_ips']:.2f} images/s ({info['single_ms']:.2f} ms)")
    lines.append(f"  peak memory ({info['memory_kind']}): {info['peak_memory_mib']:.0f} MiB "
                 f"(after {info['warmup']} warm-up + {info['iters']} timed iterations)")
    return "\n".join(lines)
