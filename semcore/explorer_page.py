"""The φ explorer's page: one self-contained HTML file from the runs' bundles (semcore.explorer). Bokeh draws
the map (WebGL) and the channel bars, its JavaScript inlined; semcore/web/explorer.js fills the panels. The
page needs no network: it opens from file://.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

from bokeh.embed import components
from bokeh.models import ColumnDataSource, CustomJS, FactorRange, HoverTool, LinearColorMapper, TapTool
from bokeh.palettes import Category20, Viridis256
from bokeh.plotting import figure
from bokeh.resources import Resources


def page(bundles: list[dict], title: str) -> str:
    """The explorer: one self-contained HTML page showing the bundles (one per run; a study's page lets the
    reader switch run). Arrays and sprite sheets are raw-text elements of base64, decoded when first needed,
    so the page is ready once the map is drawn; one that several runs share (the same images) is stored once."""
    blobs = {}  # base64 by id: raw-text elements, decoded when first needed, outside the JSON parsed at load

    def stored(data: str) -> str:
        blobs.setdefault(name := hashlib.sha1(data.encode()).hexdigest()[:16], data)
        return name

    def externalised(value):
        if isinstance(value, dict):
            if {"dtype", "shape", "data"} <= value.keys():
                return {"dtype": value["dtype"], "shape": value["shape"], "blob": stored(value["data"])}
            return {key: externalised(item) for key, item in value.items()}
        return [externalised(item) for item in value] if isinstance(value, list) else value

    runs = [externalised(bundle) | {"thumbnails": bundle["thumbnails"] | {
        "sheets": [stored(sheet) for sheet in bundle["thumbnails"]["sheets"]]}} for bundle in bundles]

    points = ColumnDataSource({"x": [], "y": [], "colour": []}, name="points")
    marked = ColumnDataSource({"x": [], "y": [], "colour": []}, name="marked")
    colours = LinearColorMapper(palette=list(Category20[20]) + ["#c8c8c8"], low=0, high=21, name="colours")
    plot = figure(name="map", output_backend="webgl", sizing_mode="stretch_both", tools="pan,wheel_zoom,box_zoom,reset",
                  active_scroll="wheel_zoom", toolbar_location="right", match_aspect=True, min_border=8)
    plot.axis.visible = plot.grid.visible = False
    dots = plot.scatter("x", "y", source=points, size=5, line_color=None, fill_alpha=0.8, name="dots",
                        fill_color={"field": "colour", "transform": colours}, nonselection_fill_alpha=0.8)
    plot.scatter("x", "y", source=marked, size=13, fill_color=None, line_width=2.5, line_color="colour")
    plot.add_tools(HoverTool(renderers=[dots], tooltips=None, callback=CustomJS(code="semcore.hover(cb_data)")),
                   TapTool(renderers=[dots]))
    points.selected.js_on_change("indices", CustomJS(code="semcore.tapped(cb_obj.indices)"))

    bar_values = ColumnDataSource({"channel": [], "value": [], "colour": []}, name="bar_values")
    bars = figure(name="bars", x_range=FactorRange(name="bar_channels"), y_range=(0, 1.05), height=170, width=430,
                  tools="tap", toolbar_location=None, min_border=4, y_axis_label="φ / channel max")
    bars.vbar(x="channel", top="value", width=0.8, source=bar_values, fill_color="colour", line_color=None)
    bars.xgrid.visible = False
    bar_values.selected.js_on_change("indices", CustomJS(code="semcore.barTapped(cb_obj.indices)"))

    script, (map_div, bars_div) = components((plot, bars))
    web = resources.files("semcore") / "web"
    data = json.dumps({"runs": runs, "category": list(Category20[20]),
                       "viridis": list(Viridis256)}, separators=(",", ":"))
    fill = {"TITLE": title, "BOKEH_JS": Resources(mode="inline", components=["bokeh", "bokeh-gl"]).render_js(),
            "CSS": (web / "explorer.css").read_text(), "EXPLORER_JS": (web / "explorer.js").read_text(),
            "BOKEH_SCRIPT": script, "MAP": map_div, "BARS": bars_div, "DATA": data.replace("</", "<\\/"),
            "BLOBS": "\n".join(f'<script type="application/octet-stream" id="blob-{name}">{data}</script>'
                               for name, data in blobs.items())}
    return re.sub(r"\{\{(\w+)\}\}", lambda found: fill[found[1]], (web / "explorer.html").read_text())
