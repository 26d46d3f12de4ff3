"""Live metrics the DVC way: a training's epochs and a tuning study's trials through DVCLive.

A ``LiveMetrics`` folder holds DVCLive's ``metrics.json`` (the latest value of each figure,
which ``dvc exp show`` and ``dvc metrics`` read) and ``plots/metrics/<figure>.tsv`` (one row
per step, which ``dvc plots`` draws and DVC's editor integrations follow while a run goes).
dvc.yaml declares both; this writes no dvc.yaml of its own, saves no experiment (``dvc exp
run`` does that) and posts nothing to DVC Studio (``facerec.runtime.offline``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

PLOTS_DIR = Path("plots") / "metrics"


class LiveMetrics:
    """Figures logged step by step into the DVCLive folder ``folder`` (emptied first)."""

    def __init__(self, folder: str | Path) -> None:
        from dvclive import Live

        # DVCLive logs the experiment it logs to at INFO; the stage's own log says what runs.
        logging.getLogger("dvclive").setLevel(logging.WARNING)
        self.folder = Path(folder)
        self._live = Live(dir=str(self.folder), dvcyaml=None, save_dvc_exp=False, report=None)

    def log(self, step: int, figures: dict[str, float]) -> None:
        """Each figure's value at ``step`` (an epoch, a trial), written at once."""
        self._live.step = step
        for name, value in figures.items():
            self._live.log_metric(name, float(value))
        self._live.make_summary()

    def close(self) -> None:
        """Write the summary; the folder holds metrics.json and plots/metrics/ even when
        nothing was logged (a training of 0 epochs without validation), as dvc.yaml declares."""
        self._live.end()
        (self.folder / PLOTS_DIR).mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> "LiveMetrics":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
