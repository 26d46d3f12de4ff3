"""The HTML template DVC renders ``dvc plots show`` / ``dvc plots diff`` into, working offline.

DVC's default page loads Vega, Vega-Lite and vega-embed from a CDN, so without a network it
shows nothing. This template carries the three libraries inline instead: the bundle that
``vl-convert-python`` (a pinned dependency) ships, so the versions are the package's and no
file is fetched at install or at run time. The repository's ``.dvc/config`` points
``plots.html_template`` at the written file; ``facerec plots-template`` rewrites it after
``vl-convert-python`` is upgraded (tests/test_dvc_plots_offline.py checks it is current).
"""

from __future__ import annotations

from pathlib import Path

import vl_convert

# Relative to .dvc/, as DVC's plots.html_template is.
TEMPLATE = Path("plots") / "offline.html"

# DVC's page skeleton (dvc_render.html.PAGE_HTML) without its {scripts} placeholder, where
# DVC would put the CDN <script> tags: the libraries come inline instead.
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- __VERSIONS__ from vl-convert-python, inline: no network needed. -->
    <script type="text/javascript">
(function () {
__BUNDLE__
})();
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


# What the bundle leaves behind: DVC's plot scripts call the global vegaEmbed.
GLOBALS = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"


def offline_template() -> str:
    """The page DVC fills with its plots (``{plot_divs}``), the Vega libraries inline.

    The bundle runs inside a function, so its top-level names cannot clash with the
    ``var spec`` of DVC's plot scripts; it sets ``window.vegaEmbed`` (and ``vega``, ``vegaLite``)."""
    bundle = vl_convert.javascript_bundle(GLOBALS)
    if "{plot_divs}" in bundle or "{refresh_tag}" in bundle:
        raise ValueError("the Vega bundle contains one of DVC's template placeholders: DVC would substitute it")
    versions = (f"Vega {vl_convert.get_vega_version()}, Vega-Lite {vl_convert.get_vegalite_versions()[-1]}, "
                f"vega-embed {vl_convert.get_vega_embed_version()}")
    return PAGE.replace("__VERSIONS__", versions).replace("__BUNDLE__", bundle)


def write_offline_template(dvc_dir: Path) -> Path:
    """Write the template under ``dvc_dir`` (a project's ``.dvc``) at ``TEMPLATE``; returns its path."""
    path = dvc_dir / TEMPLATE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(offline_template(), encoding="utf-8")
    return path
