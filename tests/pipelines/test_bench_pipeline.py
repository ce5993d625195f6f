"""``nightjar bench pipeline`` runs end to end at tiny sizes and prints its figures last (no timing asserted)."""

from __future__ import annotations

import argparse
import math
import os

import pytest
from distributed import Client

from nightjar.bench import pipeline as bench_pipeline
from nightjar.settings import Settings

LAST_LINES = ("e2e_alerts_per_s", "decode_alerts_per_s", "e2e_ratio", "chunk4_over_chunk1", "latency_p99_s",
              "peak_rss_mb")  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(600)  # a few pipeline runs; minutes on a busy 2-core machine
def test_bench_prints_its_figures_last(settings: Settings, dask_client: Client, capsys) -> None:
    parser = argparse.ArgumentParser()
    bench_pipeline.add_arguments(parser)
    tiny = "--alerts 100 --chunks 2 --history-days 30 --cutout-size 16 --rate 25 --latency-seconds 2"
    args = parser.parse_args([*tiny.split(), "--batch-size", "50", "--catalog-rows", "0"])
    result = bench_pipeline.run_bench(settings, args, client=dask_client)
    bench_pipeline.print_bench(result)
    lines = capsys.readouterr().out.strip().splitlines()
    figures = dict(line.split("=", 1) for line in lines[-len(LAST_LINES) :])
    assert tuple(figures) == LAST_LINES
    for name, value in figures.items():
        assert math.isfinite(float(value)) and float(value) > 0, name
    assert any(line.startswith("latency_p50_s=") for line in lines)
    assert any(line.startswith("latency_p95_s=") for line in lines)
    assert any(line.startswith("decode_peak_rss_mb=") for line in lines)
    printed = dict(line.split("=", 1) for line in lines if line.count("=") == 1)
    assert float(printed["cpu_ms_per_alert"]) == pytest.approx(result.cpu_ms_per_alert, abs=1e-3)
    # the pipeline and the broker both worked, and CPU time over wall time cannot exceed the machine's cores
    assert result.cpu_s > 0 and result.broker_cpu_s > 0
    assert 0 < result.cores_busy <= (os.cpu_count() or 1) * 1.05
    assert 0 < result.peak_rss_without_broker_mb < result.peak_rss_mb
    assert result.chunk_alerts == [100, 100]
    assert result.latency_matched == result.latency_produced == 50
