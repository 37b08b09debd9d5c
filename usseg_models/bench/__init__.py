"""Throughput / peak-memory benchmarks (frames/s for DSANet, images/s for IntraSense-Net and UNet)."""

from usseg_models.bench.throughput import bench_dsanet, bench_image_model, format_results

__all__ = ["bench_dsanet", "bench_image_model", "format_results"]
