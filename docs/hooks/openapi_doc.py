"""docs/openapi.json is the OpenAPI document the HTTP API serves (``smsbot.api.app.create_app``
for the repository's ``config.yaml``), committed so the site renders it offline (the
``neoteroi.mkdocsoad`` plugin on docs/api-reference.md) and readers can download it.

Every ``mkdocs build`` checks the committed copy against the app and fails when they differ,
naming the command that rewrites it: ``.venv/bin/python docs/hooks/openapi_doc.py --write``.
Building the app dials nothing (its Redis clients connect on first use)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

from smsbot import connections
from smsbot.api.app import create_app
from smsbot.config import load

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = REPO / "docs" / "openapi.json"
WRITE_COMMAND = ".venv/bin/python docs/hooks/openapi_doc.py --write"
# The document must not depend on who builds it: no SMSBOT_* from the environment, and a Redis URL
# that is never dialled (without one the bundled server would be started).
ENVIRON = {"SMSBOT_REDIS_URL": "redis://127.0.0.1:1/0"}


def document() -> dict[str, Any]:
    """What ``GET /openapi.json`` answers for the repository's config.yaml."""
    settings = load(REPO / "config.yaml", environ=ENVIRON, warn=lambda _line: None, base=REPO)
    return create_app(settings, store=connections.store(settings)).openapi()


def rendered() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def on_pre_build(config: Any) -> None:
    committed = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
    if committed != rendered():
        raise PluginError(f"docs/openapi.json is not the document the HTTP API serves; rewrite it: {WRITE_COMMAND}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {WRITE_COMMAND}")
    DOCUMENT.write_text(rendered(), encoding="utf-8")
    print(f"wrote {DOCUMENT.relative_to(REPO)}")
