"""DVC stage benchmark: latency, throughput, size, GFLOPs and Mparams of one model."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("--checkpoint", {"type": Path, "required": True}),
                                   ("--metrics", {"type": Path, "required": True})])
    steps.write_metrics(args.metrics, steps.benchmark(args.checkpoint, None, params.benchmark))


if __name__ == "__main__":
    main()
