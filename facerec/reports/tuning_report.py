"""Optuna's plots of a study on one self-contained HTML page (plotly's bundle inlined, no CDN)."""

from __future__ import annotations

import html
import logging
from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.offline import get_plotlyjs

from facerec.runtime.io import atomic_path

log = logging.getLogger(__name__)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>body {{ font-family: sans-serif; margin: 1.5em; color: #222; }} .note {{ color: #666; }}</style>
<script>{plotly}</script>
</head>
<body>
<h1>{title}</h1>
{sections}
</body>
</html>
"""


def study_figures(study: optuna.Study) -> list[tuple[str, go.Figure | str]]:
    """(heading, figure) per plot, or (heading, why it cannot be drawn yet)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = list(dict.fromkeys(name for trial in complete for name in trial.params))
    figures: list[tuple[str, go.Figure | str]] = [
        ("Optimisation history", optuna.visualization.plot_optimization_history(study)),
        ("Validation score per epoch (pruned trials stop early)",
         optuna.visualization.plot_intermediate_values(study)),
    ]
    if len(complete) >= 2 and len(names) >= 2:
        figures.append(("Parameter importances (fANOVA)", optuna.visualization.plot_param_importances(study)))
        figures.append((f"Contour of {names[0]} x {names[1]}",
                        optuna.visualization.plot_contour(study, params=names[:2])))
    else:
        reason = "needs two complete trials and two searched parameters"
        figures += [("Parameter importances", reason), ("Contour", reason)]
    return figures


def write_tuning_report(path: str | Path, study: optuna.Study) -> None:
    """Write the study's plots to ``path`` as one page that opens offline."""
    sections = []
    for heading, figure in study_figures(study):
        body = (figure.to_html(full_html=False, include_plotlyjs=False) if isinstance(figure, go.Figure)
                else f'<p class="note">{html.escape(figure)}</p>')
        sections.append(f"<h2>{html.escape(heading)}</h2>\n{body}")
    page = _PAGE.format(title=html.escape(f"Optuna study {study.study_name}"), plotly=get_plotlyjs(),
                        sections="\n".join(sections))
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("wrote %s (%d trials)", path, len(study.trials))
