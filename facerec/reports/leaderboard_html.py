"""The leaderboard as one self-contained, interactive HTML page.

Plotly's JavaScript bundle (from the installed ``plotly`` package) and the records are
inlined, so the page opens offline from disk, with no CDN. A metric menu redraws the bar
chart of every model that has the metric, best first; the table of all models sorts on
any column by clicking its header. ``#metric=<name>`` in the URL picks the metric on load
(a shareable view); the menu keeps it up to date.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from plotly.offline import get_plotlyjs

from facerec.runtime.io import atomic_path

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>facerec leaderboard</title>
<style>
  body { font-family: sans-serif; margin: 1.5em; color: #222; }
  table { border-collapse: collapse; margin-top: 1em; font-size: 0.85em; }
  th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
  th { background: #f0f0f0; cursor: pointer; user-select: none; }
  td:first-child, th:first-child { text-align: left; }
  th.sorted { background: #dde6f5; }
  #skipped { color: #666; font-size: 0.85em; }
</style>
<script>__PLOTLY__</script>
</head>
<body>
<h1>facerec leaderboard</h1>
<label>Metric <select id="metric"></select></label>
<div id="chart"></div>
<table id="board"><thead><tr></tr></thead><tbody></tbody></table>
__SKIPPED__
<script>
const RECORDS = __RECORDS__;
const COLUMNS = __COLUMNS__;
const LOWER_IS_BETTER = new Set(__LOWER__);
const menu = document.getElementById("metric");
const chart = document.getElementById("chart");
const table = document.getElementById("board");

function format(value) {
  if (value === null || value === undefined) return "\\u2014";
  if (typeof value !== "number") return String(value);
  return Math.abs(value) < 10 ? value.toFixed(4) : value.toFixed(1);
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

function drawChart(metric) {
  const shown = bestFirst(RECORDS.filter(r => r[metric] !== null), metric).reverse();
  const data = [{type: "bar", orientation: "h", x: shown.map(r => r[metric]), y: shown.map(r => r.model),
                 text: shown.map(r => format(r[metric])), textposition: "auto", marker: {color: "#4c72b0"}}];
  const layout = {title: {text: metric + (LOWER_IS_BETTER.has(metric) ? " (lower is better)" : " (higher is better)")},
                  xaxis: {title: {text: metric}}, yaxis: {automargin: true},
                  height: 120 + 32 * Math.max(shown.length, 1), margin: {t: 50, r: 20}};
  Plotly.react(chart, data, layout, {displaylogo: false, responsive: true});
  chart.dataset.metric = metric;
}

function drawTable(column) {
  const head = table.tHead.rows[0];
  head.innerHTML = "";
  for (const name of COLUMNS) {
    const cell = document.createElement("th");
    cell.textContent = name;
    cell.className = name === column ? "sorted" : "";
    cell.onclick = () => drawTable(name);
    head.appendChild(cell);
  }
  const body = table.tBodies[0];
  body.innerHTML = "";
  for (const record of bestFirst(RECORDS, column)) {
    const row = body.insertRow();
    for (const name of COLUMNS) row.insertCell().textContent = format(record[name]);
  }
  table.dataset.sortedBy = column;
}

function show(metric) {
  menu.value = metric;
  drawChart(metric);
  drawTable(metric);
  history.replaceState(null, "", "#metric=" + encodeURIComponent(metric));
}

for (const name of COLUMNS.slice(1)) menu.add(new Option(name, name));
menu.onchange = () => show(menu.value);
const asked = decodeURIComponent((location.hash.match(/metric=([^&]+)/) || [])[1] || "");
show(COLUMNS.includes(asked) && asked !== "model" ? asked : __DEFAULT__);
</script>
</body>
</html>
"""


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element (a model named '</script>' cannot end it)."""
    return json.dumps(value).replace("</", "<\\/")


def leaderboard_html(records: list[dict], columns: list[str], lower_is_better: set[str], default_metric: str,
                     skipped: dict[str, str] | None = None) -> str:
    """The page for ``records`` (one flat dict per model with every column)."""
    notes = ""
    if skipped:
        items = "".join(f"<li>{html.escape(name)}: {html.escape(reason)}</li>"
                        for name, reason in sorted(skipped.items()))
        notes = f'<div id="skipped"><p>Not ranked (zoo entries that could not run here):</p><ul>{items}</ul></div>'
    replacements = {
        "__SKIPPED__": notes,
        "__RECORDS__": _script_json(records),
        "__COLUMNS__": _script_json(columns),
        "__LOWER__": _script_json(sorted(lower_is_better)),
        "__DEFAULT__": _script_json(default_metric),
        "__PLOTLY__": get_plotlyjs(),  # last: the bundle's text is never searched for markers
    }
    page = _PAGE
    for marker, text in replacements.items():
        page = page.replace(marker, text, 1)
    return page


def write_leaderboard_html(path: str | Path, records: list[dict], columns: list[str], lower_is_better: set[str],
                           default_metric: str, skipped: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(leaderboard_html(records, columns, lower_is_better, default_metric, skipped),
                             encoding="utf-8")
