"""The site's front page is README.md, one source for GitHub and the site: `on_files` adds it as
``index.md``, and `on_page_markdown` turns its links into ``docs/`` (``docs/testers.md``,
``docs/handsets.png``) into links relative to the site's pages (``testers.md``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

README = Path(__file__).resolve().parents[2] / "README.md"
INDEX = "index.md"
DOCS_LINK = re.compile(r"\]\(docs/")  # a Markdown link or image target under docs/


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, INDEX, abs_src_path=str(README)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.src_uri != INDEX:
        return markdown
    return DOCS_LINK.sub("](", markdown)
