"""Stage benchmark_zoo: the benchmark figures of every zoo entry that can run here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from facerec.benchmarking.timing import benchmark_embedder
from facerec.config import BenchmarkParams, ZooEntry
from facerec.models.peers import sample_face
from facerec.models.peers.load import load_peer
from facerec.models.zoo import run_zoo
from facerec.pipeline.benchmark import benchmark
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, load, print_record
from facerec.registry import PEERS


def benchmark_zoo(entries: list[ZooEntry], out_dir: Path, report_path: Path, params: BenchmarkParams) -> dict:
    """OUT/<name>.json for every zoo entry that can run; ``report_path`` lists the skipped ones."""
    def run(entry: ZooEntry) -> dict:
        if entry.arch in PEERS:
            torch.set_num_threads(params.num_threads)
            return benchmark_embedder(load_peer(entry.arch), sample_face(), params.warmup_runs,
                                      params.timed_runs, params.throughput_batch_sizes)
        assert entry.path is not None  # ZooEntry requires a path for checkpoint entries
        return benchmark(entry.path, entry.arch, params)
    return run_zoo(entries, out_dir, report_path, run)


def command(out: Annotated[Path, typer.Option(help="folder for <name>.json")] = Path("metrics/zoo/benchmark"),
            report: Annotated[Path, typer.Option(help="JSON of the entries run and skipped")] = Path(
                "metrics/zoo/benchmark_report.json"),
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Benchmark figures of every entry of the params file's zoo that can run here."""
    settings = load(params)
    print_record(benchmark_zoo(list(settings.zoo.values()), out, report, settings.benchmark))
