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

# Named, not plotly's default ("plotly"), which other libraries edit in place when imported
# (Evidently sets its colours on it): the page is the same whatever this process imported.
TEMPLATE = "plotly_white"

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
        if len({trial.value for trial in complete}) >= 2:
            # fANOVA's forest is random: seeded, so that a rerun writes the same page (a DVC out).
            figures.append(("Parameter importances (fANOVA)", optuna.visualization.plot_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))))
        else:  # fANOVA shares the scores' variance among the parameters: there is none to share
            figures.append(("Parameter importances", "every complete trial has the same score"))
        figures.append((f"Contour of {names[0]} x {names[1]}",
                        optuna.visualization.plot_contour(study, params=names[:2])))
    else:
        reason = "needs two complete trials and two searched parameters"
        figures += [("Parameter importances", reason), ("Contour", reason)]
    return figures


def write_tuning_report(path: str | Path, study: optuna.Study) -> None:
    """Write the study's plots to ``path`` as one page that opens offline."""
    sections = []
    for number, (heading, figure) in enumerate(study_figures(study)):
        # A fixed div id: plotly's default is random, which would change the page every rerun.
        body = (figure.update_layout(template=TEMPLATE).to_html(full_html=False, include_plotlyjs=False,
                                                                 div_id=f"figure-{number}")
                if isinstance(figure, go.Figure)
                else f'<p class="note">{html.escape(figure)}</p>')
        sections.append(f"<h2>{html.escape(heading)}</h2>\n{body}")
    page = _PAGE.format(title=html.escape(f"Optuna study {study.study_name}"), plotly=get_plotlyjs(),
                        sections="\n".join(sections))
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("wrote %s (%d trials)", path, len(study.trials))
