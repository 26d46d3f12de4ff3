"""The leaderboard as one self-contained, interactive HTML page, one evaluation set at a time.

Plotly's JavaScript bundle (from the installed ``plotly`` package), the records and every
set's ROC curves are inlined, so the page opens offline from disk, with no CDN. A set menu
and a metric menu pick what is shown: the bar chart of the set's models that have the
metric, best first; the table of the set's models (the columns the set has), sorted on any
column by clicking its header; every model's ROC on the set; and the metric against latency
with the Pareto front marked (computed here, by :func:`facerec.reports.leaderboard.pareto_front`).
``#set=<name>&metric=<name>`` in the URL picks both on load (a shareable view); the menus
keep it up to date.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from plotly.offline import get_plotlyjs

from facerec.reports.leaderboard import COLUMNS, LOWER_IS_BETTER, METRICS, by_set, pareto_front, sort_metric
from facerec.runtime.io import atomic_path

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>facerec leaderboard</title>
<style>
  body { font-family: sans-serif; margin: 1.5em; color: #222; }
  label { margin-right: 1.5em; }
  table { border-collapse: collapse; margin-top: 1em; font-size: 0.85em; }
  th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
  th { background: #f0f0f0; cursor: pointer; user-select: none; }
  td:first-child, th:first-child { text-align: left; }
  th.sorted { background: #dde6f5; }
  .plots { display: flex; flex-wrap: wrap; }
  .plots > div { flex: 1 1 560px; min-width: 0; }
  #skipped { color: #666; font-size: 0.85em; }
</style>
<script>__PLOTLY__</script>
</head>
<body>
<h1>facerec leaderboard</h1>
<label>Evaluation set <select id="set"></select></label>
<label>Metric <select id="metric"></select></label>
<div id="chart"></div>
<table id="board"><thead><tr></tr></thead><tbody></tbody></table>
<div class="plots"><div id="roc"></div><div id="pareto"></div></div>
__SKIPPED__
<script>
const RECORDS = __RECORDS__;
const SETS = __SETS__;
const COLUMNS = __COLUMNS__;
const LOWER_IS_BETTER = new Set(__LOWER__);
const setMenu = document.getElementById("set");
const menu = document.getElementById("metric");
const chart = document.getElementById("chart");
const table = document.getElementById("board");
const roc = document.getElementById("roc");
const pareto = document.getElementById("pareto");
const CONFIG = {displaylogo: false, responsive: true};

function format(value) {
  if (value === null || value === undefined) return "\\u2014";
  if (typeof value !== "number") return String(value);
  return Math.abs(value) < 10 ? value.toFixed(4) : value.toFixed(1);
}

function direction(metric) {
  return LOWER_IS_BETTER.has(metric) ? "lower is better" : "higher is better";
}

function bestFirst(rows, column) {
  const sign = LOWER_IS_BETTER.has(column) ? 1 : -1;
  return rows.slice().sort((a, b) => {
    if (a[column] === null) return b[column] === null ? 0 : 1;
    if (b[column] === null) return -1;
    if (typeof a[column] === "string") return a[column].localeCompare(b[column]);
    return sign * (a[column] - b[column]);
  });
}

function drawChart(set, rows, metric) {
  const shown = bestFirst(rows.filter(r => r[metric] !== null), metric).reverse();
  const data = [{type: "bar", orientation: "h", x: shown.map(r => r[metric]), y: shown.map(r => r.model),
                 text: shown.map(r => format(r[metric])), textposition: "auto", marker: {color: "#4c72b0"}}];
  const layout = {title: {text: set.name + ": " + metric + " (" + direction(metric) + ")"},
                  xaxis: {title: {text: metric}}, yaxis: {automargin: true},
                  height: 120 + 32 * Math.max(shown.length, 1), margin: {t: 50, r: 20}};
  Plotly.react(chart, data, layout, CONFIG);
  chart.dataset.set = set.name;
  chart.dataset.metric = metric;
}

function drawTable(rows, columns, column) {
  const head = table.tHead.rows[0];
  head.innerHTML = "";
  for (const name of columns) {
    const cell = document.createElement("th");
    cell.textContent = name;
    cell.className = name === column ? "sorted" : "";
    cell.onclick = () => drawTable(rows, columns, name);
    head.appendChild(cell);
  }
  const body = table.tBodies[0];
  body.innerHTML = "";
  for (const record of bestFirst(rows, column)) {
    const row = body.insertRow();
    for (const name of columns) row.insertCell().textContent = format(record[name]);
  }
  table.dataset.sortedBy = column;
}

function drawRoc(set) {
  const data = set.rocs.map(curve => ({type: "scatter", mode: "lines", name: curve.model, x: curve.fpr, y: curve.tpr}));
  const layout = {title: {text: "ROC on " + set.name}, height: 460, margin: {t: 50, r: 20},
                  xaxis: {type: "log", title: {text: "false accept rate (log)"}},
                  yaxis: {title: {text: "true accept rate"}, range: [0, 1.02]}};
  Plotly.react(roc, data, layout, CONFIG);
  roc.dataset.set = set.name;
}

function drawPareto(set, rows, metric) {
  const shown = rows.filter(r => r[metric] !== null && r.latency_ms !== null);
  const front = set.fronts[metric].map(model => shown.find(r => r.model === model));
  const data = [
    {type: "scatter", mode: "markers+text", name: "models", x: shown.map(r => r.latency_ms),
     y: shown.map(r => r[metric]), text: shown.map(r => r.model), textposition: "top center",
     cliponaxis: false, marker: {color: "#9aa5b8", size: 9}},
    // The best figure attainable at each latency: it steps up (or down) at each front model.
    {type: "scatter", mode: "lines+markers", name: "Pareto front", x: front.map(r => r.latency_ms),
     y: front.map(r => r[metric]), text: front.map(r => r.model), line: {shape: "hv", color: "#dd8452"},
     marker: {color: "#dd8452", size: 11}},
  ];
  const layout = {title: {text: set.name + ": " + metric + " against latency"}, height: 460, margin: {t: 50, r: 20},
                  xaxis: {type: "log", title: {text: "latency_ms (log), lower is better"}},
                  yaxis: {title: {text: metric + ", " + direction(metric)}}};
  Plotly.react(pareto, data, layout, CONFIG);
  pareto.dataset.set = set.name;
  pareto.dataset.metric = metric;
}

function show(name, asked) {
  const set = SETS.find(s => s.name === name) || SETS[0];
  const rows = RECORDS.filter(r => r.set === set.name);
  const columns = COLUMNS.filter(c => c === "model" || rows.some(r => r[c] !== null));
  // A metric this set lacks (another set's, or none asked) gives way to the set's own ranking.
  const metric = columns.includes(asked) && asked !== "model" ? asked : set.sort_metric;
  setMenu.value = set.name;
  menu.replaceChildren(...columns.slice(1).map(c => new Option(c, c)));
  menu.value = metric;
  drawChart(set, rows, metric);
  drawTable(rows, columns, metric);
  drawRoc(set);
  drawPareto(set, rows, metric);
  history.replaceState(null, "", "#" + new URLSearchParams({set: set.name, metric: metric}));
}

function showHash() {
  const asked = new URLSearchParams(location.hash.slice(1));
  show(asked.get("set"), asked.get("metric"));
}

for (const set of SETS) setMenu.add(new Option(set.name + " (" + set.kind + ")", set.name));
setMenu.onchange = menu.onchange = () => show(setMenu.value, menu.value);
window.onhashchange = showHash;
if (SETS.length) showHash();
</script>
</body>
</html>
"""


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element (a model named '</script>' cannot end it)."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def _set_view(name: str, records: Sequence[dict], sort_by: str, roc: pd.DataFrame | None) -> dict:
    """What the page needs of one set besides its records: its ranking metric, the Pareto
    front against latency for each metric, and every model's ROC."""
    curves = [] if roc is None else [{"model": model, "fpr": curve["fpr"].tolist(), "tpr": curve["tpr"].tolist()}
                                     for model, curve in roc.groupby("model", sort=False)]
    return {"name": name, "kind": records[0]["kind"], "sort_metric": sort_metric(records, sort_by),
            "fronts": {metric: pareto_front(records, metric) for metric in METRICS}, "rocs": curves}


def _list(title: str, reasons: Mapping[str, str]) -> str:
    items = "".join(f"<li>{html.escape(name)}: {html.escape(reason)}</li>" for name, reason in sorted(reasons.items()))
    return f"<p>{html.escape(title)}</p><ul>{items}</ul>"


def _skipped_notes(skipped: Sequence[dict], not_benchmarked: Mapping[str, str] | None) -> str:
    notes = [_list(f"Not ranked on {set_name} (zoo entries that could not run on it):",
                   {entry["model"]: entry["reason"] for entry in entries})
             for set_name, entries in by_set(skipped).items()]
    if not_benchmarked:
        notes.append(_list("Not benchmarked (zoo entries whose cost could not be measured here):", not_benchmarked))
    return f'<div id="skipped">{"".join(notes)}</div>' if notes else ""


def leaderboard_html(records: Sequence[dict], sort_by: str, rocs: Mapping[str, pd.DataFrame],
                     skipped: Sequence[dict] = (), not_benchmarked: Mapping[str, str] | None = None) -> str:
    """The page for ``records`` (flat, one per (set, model), as ``build_leaderboard`` returns
    them), ``rocs`` ({set: long table of model, fpr, tpr}, as ``read_rocs`` returns) and the
    entries that did not run (as ``skipped_evaluations`` and ``skipped_models`` return)."""
    sets = [_set_view(name, group, sort_by, rocs.get(name)) for name, group in by_set(records).items()]
    replacements = {
        "__SKIPPED__": _skipped_notes(skipped, not_benchmarked),
        "__RECORDS__": _script_json(list(records)),
        "__SETS__": _script_json(sets),
        "__COLUMNS__": _script_json(COLUMNS),
        "__LOWER__": _script_json(sorted(LOWER_IS_BETTER)),
        "__PLOTLY__": get_plotlyjs(),
    }
    # One pass over the template: inserted text (a model's name, the bundle) is never searched for markers.
    return re.sub("|".join(replacements), lambda match: replacements[match.group(0)], _PAGE)


def write_leaderboard_html(path: str | Path, records: Sequence[dict], sort_by: str, rocs: Mapping[str, pd.DataFrame],
                           skipped: Sequence[dict] = (), not_benchmarked: Mapping[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(leaderboard_html(records, sort_by, rocs, skipped, not_benchmarked), encoding="utf-8")
