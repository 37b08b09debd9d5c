"""End-to-end server benchmark: seconds for one cine through ``POST /infer/dsanet`` (upload to result file).

A synthetic ``frames``-frame US multi-frame DICOM is uploaded to a MONAI Label server running this project's
app, and the time from the start of the upload to the last byte of the returned label is measured (client
side, after ``warmup`` untimed requests). The server's own ``pre``/``infer``/``post`` latencies come from the
response parameters. Without ``url`` a private server is started on 127.0.0.1 (small configuration on CPU by
default; ``config="paper"`` with ``device="cuda"`` on a GPU machine) and stopped afterwards.

Examples::

    usseg bench server --config small --frames 100
    usseg bench server --url http://127.0.0.1:8000 --frames 100 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

__all__ = ["make_cine_dicom", "answer_params", "private_server", "bench_server", "format_server_results",
           "add_server_parser", "run_server_bench"]


def make_cine_dicom(path: str | Path, frames: int = 100, size: int = 128, seed: int = 0) -> Path:
    """Write a synthetic ``frames``-frame ``size``x``size`` US multi-frame DICOM and return its path."""
    from usseg_models.data.dicom_writer import synthetic_identity, write_us_cine
    from usseg_models.data.synthetic import simulate_cine

    cine = simulate_cine(num_frames=frames, size=size, seed=seed)
    return write_us_cine(path, cine.frames_tyx(), cine.pixel_mm, cine.frame_time_ms,
                         synthetic_identity(seed, "bench_cine"))


def _infer_once(url: str, path: Path, timeout: float) -> tuple[float, dict[str, Any], int]:
    start = time.perf_counter()
    with open(path, "rb") as f:
        r = requests.post(f"{url}/infer/dsanet", params={"output": "all"}, files={"file": (path.name, f)},
                          data={"params": json.dumps({"allow_untrained": True})}, timeout=timeout)
    body = r.content  # the whole multipart answer (label file included) has arrived
    seconds = time.perf_counter() - start
    return seconds, answer_params(r, body, "POST /infer/dsanet"), len(body)


def answer_params(response: requests.Response, body: bytes, what: str) -> dict[str, Any]:
    """The ``params`` part of an infer task's multipart answer (``RuntimeError`` naming ``what`` unless 200)."""
    if response.status_code != 200:
        raise RuntimeError(f"{what} answered HTTP {response.status_code}: {response.text[:300]}")
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    params: dict[str, Any] = {}
    for part in MultipartDecoder(body, response.headers["content-type"]).parts:
        if b'name="params"' in part.headers.get(b"Content-Disposition", b""):
            params = json.loads(part.content)
    return params


@contextlib.contextmanager
def private_server(folder: Path, config: str, device: str | None, url: str | None = None) -> Iterator[str]:
    """Yield ``url`` when given, else start this project's app (DSANet only, no training) on an empty datastore in
    ``folder`` on 127.0.0.1, yield its URL and stop it afterwards."""
    if url is not None:
        yield url
        return
    from usseg_models.serving.launcher import MonaiLabelServer, prepare_app_dir

    studies = folder / "studies"
    studies.mkdir()
    conf = {"models": "dsanet", "config": config, "auto_retrain_after": "0", "bootstrap_min_labels": "0"}
    if device:
        conf["device"] = device
    # no automatic scoring: its subprocess (started with the server) would share the CPU with the timed requests
    server = MonaiLabelServer(prepare_app_dir(folder / "app"), studies, conf=conf,
                              env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "false"})
    try:
        yield server.start(timeout=600)
    finally:
        server.stop()


def bench_server(
    config: str = "small",
    frames: int = 100,
    size: int = 128,
    repeats: int = 3,
    warmup: int = 1,
    device: str | None = None,
    url: str | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Time ``repeats`` uploads of a ``frames``-frame cine through ``POST /infer/dsanet``.

    Args:
        config: ``small`` or ``paper`` (only used when this function starts the server).
        frames, size: the synthetic cine's length and frame size (pixels).
        repeats: timed requests; warmup: untimed requests before them.
        device: inference device for a server started here (default: the app's choice).
        url: an already running server to measure instead of starting one.
        timeout: seconds allowed per request.

    Returns:
        dict with ``seconds`` (per request), ``median_s``, ``min_s``, ``frames_per_s`` (median), the server's
        ``server_latencies`` of the last request, ``label_shape``, ``config``, ``frames``, ``size``, ``url``.
    """
    if repeats < 1 or warmup < 0 or frames < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, frames >= 1; got {repeats}, {warmup}, {frames}")
    with tempfile.TemporaryDirectory(prefix="usseg_bench_server_") as tmp:
        tmp_path = Path(tmp)
        cine = make_cine_dicom(tmp_path / "bench_cine.dcm", frames, size)
        with private_server(tmp_path, config, device, url) as url:
            for _ in range(warmup):
                _infer_once(url, cine, timeout)
            runs = [_infer_once(url, cine, timeout) for _ in range(repeats)]
    seconds = [round(s, 4) for s, _, _ in runs]
    params = runs[-1][1]
    median = statistics.median(seconds)
    return {
        "benchmark": "server POST /infer/dsanet (upload to result file)",
        "url": url,
        "config": params.get("model", {}).get("config", config),
        "frames": frames,
        "size": size,
        "seconds": seconds,
        "median_s": round(median, 4),
        "min_s": min(seconds),
        "frames_per_s": round(frames / median, 2),
        "server_latencies": params.get("latencies"),
        "label_shape": params.get("shape"),
        "response_bytes": runs[-1][2],
    }


def format_server_results(info: dict[str, Any]) -> str:
    """Human-readable summary of :func:`bench_server`'s result."""
    return (
        f"{info['benchmark']} [{info['config']}] {info['frames']} frames of {info['size']} px: "
        f"median {info['median_s']:.3f} s (min {info['min_s']:.3f} s, {info['frames_per_s']:.1f} frames/s); "
        f"server latencies {info['server_latencies']}; label {info['label_shape']}"
    )


def add_server_parser(sub) -> argparse.ArgumentParser:
    """Register ``usseg bench server`` on the ``bench`` sub-command's subparsers."""
    p = sub.add_parser("server", help="end-to-end seconds of a cine through POST /infer/dsanet")
    p.add_argument("--config", default="small", choices=["paper", "small"], help="app configuration (default small)")
    p.add_argument("--device", default=None, help="inference device of the started server (cpu, cuda)")
    p.add_argument("--frames", type=int, default=100, help="cine length (default 100)")
    p.add_argument("--size", type=int, default=128, help="frame size in pixels (default 128)")
    p.add_argument("--repeats", type=int, default=3, help="timed requests (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed requests first (default 1)")
    p.add_argument("--url", default=None, help="measure this running server instead of starting one")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--refine", action="store_true",
                   help="time POST /infer/dsanet_refine (modes propagate, hybrid) split by part instead; "
                        "frames default 100, size default 256 (see usseg_models.bench.server_refine)")
    p.add_argument("--k", type=int, default=3, help="--refine: corrected frames of the first request (default 3)")
    p.set_defaults(func=run_server_bench)
    return p


def run_server_bench(args: argparse.Namespace) -> int:
    if args.refine:
        from usseg_models.bench.server_refine import bench_refine_server, format_refine_results

        size = 256 if args.size == 128 and "--size" not in sys.argv else args.size
        info = bench_refine_server(args.config, args.frames, size, args.k, args.repeats, url=args.url,
                                   device=args.device)
        print(json.dumps(info, indent=2) if args.json else format_refine_results(info))
        return 0
    info = bench_server(args.config, args.frames, args.size, args.repeats, args.warmup, args.device, args.url)
    print(json.dumps(info, indent=2) if args.json else format_server_results(info))
    return 0
