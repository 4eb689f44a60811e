"""Diagrams drawn as text and shown as pictures: a fenced block marked ``bob`` (svgbob's ASCII
drawing language) becomes an inline SVG when the site is built, by the svgbob binary that the
``markdown-svgbob`` package bundles, run on the drawing (stdin to stdout: the package's own
`text2svg` caches through a shared file in /tmp that two builds at once could read half-written).
No script, nothing fetched; the page's Markdown keeps the drawing readable as text (on GitHub too)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from markdown_svgbob import get_bin_path

BOB_FENCE = re.compile(r"^```bob\n(?P<drawing>.*?)^```$", re.M | re.S)
SIZE = re.compile(r'<svg xmlns="http://www.w3.org/2000/svg" width="(?P<w>\d+)" height="(?P<h>\d+)">')


def svg(drawing: str) -> str:
    """The drawing as one line of SVG markup that scales down to the page's width."""
    markup = subprocess.run([str(get_bin_path())], input=drawing, capture_output=True, text=True, check=True,
                            timeout=60).stdout
    size = SIZE.search(markup)
    if size is None:
        raise ValueError(f"svgbob's output has no size: {markup[:120]!r}")
    w, h = size["w"], size["h"]
    scalable = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
                f'style="max-width: 100%; height: auto" role="img">')
    return " ".join(SIZE.sub(scalable, markup, count=1).split())  # one line: Markdown keeps it raw


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return BOB_FENCE.sub(lambda m: f'<div class="diagram">{svg(m["drawing"])}</div>\n', markdown)
