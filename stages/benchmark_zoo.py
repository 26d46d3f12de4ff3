"""DVC stage benchmark_zoo: latency, throughput, size, GFLOPs and Mparams of every zoo entry that can run here."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("--out", {"type": Path, "required": True}),
                                   ("--report", {"type": Path, "required": True})])
    steps.benchmark_zoo(params.zoo, args.out, args.report, params.benchmark)


if __name__ == "__main__":
    main()
