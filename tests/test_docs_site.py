"""The documentation site (issue 24): ``mkdocs build --strict`` of mkdocs.yml, as a reader gets it.

The build fails on a broken link or anchor between pages, a missing snippet, a stale
docs/openapi.json or a page outside the navigation; on top of that this checks the built site:
every page of the navigation is there, the front page is the README, every link and picture on
every page resolves inside the site, nothing is loaded from elsewhere (offline at view time), the
architecture's diagram is an SVG, the dashboard page lists every panel of the committed dashboard,
and the README keeps the two quick-start commands that .ci/run and newcomers run. A real headless
Chromium that can reach nothing but loopback opens every page from a local server: nothing is
asked from elsewhere, and the search finds a command.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from .browser import LOOPBACK_ONLY, chromium
from .conftest import REPO
from .helpers import wait_until

DEMO_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/smsbot demo"
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/pytest"


def nav_pages(nav: list) -> Iterator[str]:
    for item in nav:
        for value in (item.values() if isinstance(item, dict) else [item]):
            if isinstance(value, list):
                yield from nav_pages(value)
            else:
                yield value


class Refs(HTMLParser):
    """The links, pictures, scripts and styles a page refers to."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, value))


class Text(HTMLParser):
    """A page's text as a reader sees it (tags gone, entities read)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def text_of(page: Path) -> str:
    parser = Text()
    parser.feed(page.read_text(encoding="utf-8"))
    return "".join(parser.parts)


def refs_of(page: Path) -> list[tuple[str, str]]:
    parser = Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.refs


def load_hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", REPO / "docs" / "hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", "mkdocs.yml",
                          "--site-dir", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def page_path(site: Path, src: str) -> Path:
    """Where mkdocs writes the page of `src` (``testers.md`` -> ``testers/index.html``)."""
    return site / ("index.html" if src == "index.md" else src.removesuffix(".md") + "/index.html")


def test_every_page_of_the_navigation_is_built(site: Path) -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = list(nav_pages(config["nav"]))
    assert {"index.md", "subscribers.md", "testers.md", "configuration.md", "api.md", "api-reference.md",
            "webhooks.md", "operations.md", "observability.md", "dashboard.md", "crash-safety.md",
            "interoperability.md", "performance.md", "adding-a-command.md", "architecture.md"} <= set(pages)
    for src in pages:
        assert page_path(site, src).is_file(), src
    assert {p.name for p in (REPO / "docs").glob("*.md")} == set(pages) - {"index.md"}  # index.md is the README


def test_front_page_is_the_readme(site: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    index = text_of(page_path(site, "index.md"))
    for command in (DEMO_COMMAND, TEST_COMMAND):
        assert command in index, command
    for heading in re.findall(r"^## (.+)$", readme, re.M):
        assert f"{heading}\n" in index, heading
    first_paragraph = readme.split("\n\n")[1]
    assert " ".join(first_paragraph.replace("**", "").replace("`", "").split()) in " ".join(index.split())
    assert 'src="handsets.png"' in page_path(site, "index.md").read_text(encoding="utf-8")  # README's docs/handsets.png


def test_every_link_and_picture_resolves_inside_the_site(site: Path) -> None:
    checked = 0
    for page in site.rglob("*.html"):
        if page.name == "404.html":
            continue  # served for any missing path, so its links start at the site's root
        for tag, ref in refs_of(page):
            url = urlsplit(ref)
            if url.scheme or url.netloc:
                assert tag == "a", f"{page.relative_to(site)} loads {ref} from elsewhere ({tag})"
                continue
            if not url.path:
                continue  # an anchor on the same page
            target = (page.parent / unquote(url.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            assert target.is_file() and site.resolve() in target.parents, f"{page.relative_to(site)}: {ref}"
            checked += 1
    assert checked > 100


def test_nothing_is_loaded_from_elsewhere(site: Path) -> None:
    """Offline at view time: no web fonts, no script or style sheet from a CDN."""
    for f in [*site.rglob("*.html"), *site.rglob("*.css"), *site.rglob("*.js")]:
        text = f.read_text(encoding="utf-8", errors="replace")
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, f
        for tag, ref in refs_of(f) if f.suffix == ".html" else []:
            if tag in ("script", "link", "img", "iframe"):
                assert not urlsplit(ref).scheme, f"{f.relative_to(site)}: {tag} {ref}"


def test_pictures_are_on_their_pages(site: Path) -> None:
    assert 'src="../handsets.png"' in page_path(site, "testers.md").read_text(encoding="utf-8")
    assert 'src="../status.png"' in page_path(site, "observability.md").read_text(encoding="utf-8")
    architecture = page_path(site, "architecture.md").read_text(encoding="utf-8")
    diagram = re.search(r'<div class="diagram"><svg .*?</svg>', architecture, re.S)
    assert diagram and "transport" in diagram.group(0) and "EVALSHA" in diagram.group(0)


def test_dashboard_page_lists_every_panel_and_its_queries(site: Path) -> None:
    page = page_path(site, "dashboard.md").read_text(encoding="utf-8")
    layout = (site / "dashboard-layout.svg").read_text(encoding="utf-8")
    panels = json.loads((REPO / "contrib" / "grafana" / "smsbot-dashboard.json").read_text(encoding="utf-8"))["panels"]
    assert len(panels) > 10
    for p in panels:
        title = p["title"].replace("'", "&#x27;")
        assert f">{title}<" in page and f">{title}<" in layout, p["title"]
        for t in p.get("targets", []):
            assert t["expr"].replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;") in page


def test_api_reference_renders_every_operation_of_the_app(site: Path) -> None:
    page = text_of(page_path(site, "api-reference.md"))
    document = json.loads((REPO / "docs" / "openapi.json").read_text(encoding="utf-8"))
    for path, ops in document["paths"].items():
        for method in ops:
            assert f"{method.upper()} {path}" in page, (method, path)
    assert (site / "openapi.json").read_bytes() == (REPO / "docs" / "openapi.json").read_bytes()


def test_committed_openapi_document_is_what_the_api_serves() -> None:
    """docs/openapi.json is rewritten with `.venv/bin/python docs/hooks/openapi_doc.py --write`."""
    hook = load_hook("openapi_doc")
    committed = (REPO / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == hook.rendered(), f"stale docs/openapi.json: run {hook.WRITE_COMMAND}"
    assert {"/v1/orders", "/v1/control", "/v1/webhooks"} <= set(json.loads(committed)["paths"])


def test_readme_keeps_the_two_quick_start_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    assert f"{DEMO_COMMAND}\n" in blocks and f"{TEST_COMMAND}\n" in blocks
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == TEST_COMMAND  # exactly the README's test command


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def served(site: Path) -> Iterator[str]:
    """The built site on a loopback port, as `python -m http.server` would serve it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def offline_browser(tmp_path: Path) -> Iterator[Any]:
    yield from chromium(tmp_path, window="1280,1000", args=LOOPBACK_ONLY, logs=("browser", "performance"))


def requested_urls(driver: Any) -> list[str]:
    return [msg["params"]["request"]["url"] for msg in (json.loads(e["message"])["message"] for e in driver.get_log("performance"))
            if msg["method"] == "Network.requestWillBeSent"]


def test_site_works_offline_in_a_browser(site: Path, served: str, offline_browser: Any) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    d = offline_browser
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    asked: list[str] = []
    for src in nav_pages(config["nav"]):
        d.get(f"{served}/{page_path(site, src).relative_to(site).parent.as_posix()}/".replace("/./", "/"))
        assert wait_until(lambda: d.find_elements(By.CSS_SELECTOR, "article h1"), timeout=10), src
        asked += requested_urls(d)
    web = [u for u in asked if urlsplit(u).scheme in ("http", "https", "ws", "wss")]  # not chrome://, data:
    assert len(web) > 40 and all(urlsplit(u).hostname == "127.0.0.1" for u in web), \
        sorted({u for u in web if urlsplit(u).hostname != "127.0.0.1"})
    d.find_element(By.TAG_NAME, "body").send_keys("/")  # the theme's key for its search box
    assert wait_until(lambda: d.switch_to.active_element.get_attribute("name") == "query", timeout=10)
    d.switch_to.active_element.send_keys("CXLL")
    def found() -> list[str]:
        """The search results' links; [] while the theme re-renders them (each key typed re-renders,
        so a link found may be gone before it is read)."""
        try:
            return [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, ".md-search-result__link")]
        except StaleElementReferenceException:
            return []

    assert wait_until(lambda: any("/subscribers/" in h for h in found()), timeout=15), found()
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
