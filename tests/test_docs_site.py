"""Tests of the documentation site: a strict build, its links and images, and rendering.

The browser checks open pages of the built site in headless Chromium, served from a local
HTTP server on 127.0.0.1, and skip only when no Chromium executable is installed.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "minorityprompt"
API_PAGES = ROOT / "docs" / "api"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Packages that the API reference leaves out, because the command line has its own page.
UNDOCUMENTED_PACKAGES = ("minorityprompt.cli",)
WINDOW = (1280, 1800)


class PageParser(HTMLParser):
    """Collect headings, image sources and link targets of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.resources: list[str] = []
        self.text: list[str] = []
        self._heading: str | None = None
        self._heading_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in ("h1", "h2", "h3"):
            self._heading, self._heading_text = tag, []
        elif tag == "img" and attributes.get("src"):
            self.images.append(attributes["src"])
        elif tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
        elif tag == "script" and attributes.get("src"):
            self.resources.append(attributes["src"])
        elif tag == "link" and attributes.get("href"):
            self.resources.append(attributes["href"])

    def handle_endtag(self, tag):
        if tag == self._heading:
            text = "".join(self._heading_text).replace("¶", "").strip()
            self.headings.append((tag, text))
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self._heading is not None:
            self._heading_text.append(data)

    def headings_of(self, tag: str) -> list[str]:
        return [text for level, text in self.headings if level == tag]


def parse_page(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


def is_external(target: str) -> bool:
    parts = urlsplit(target)
    return bool(parts.scheme or parts.netloc)


def resolve_target(site: Path, page: Path, target: str) -> Path | None:
    """The file that a relative link on `page` points to, or `None` for in-page anchors."""
    path = unquote(urlsplit(target).path)
    if not path:
        return None
    resolved = (page.parent / path).resolve() if not path.startswith("/") else site / path[1:]
    if resolved.is_dir() or path.endswith("/"):
        resolved = resolved / "index.html"
    return resolved


def public_modules() -> list[str]:
    """Dotted names of the package's modules, packages' `__init__` files left out."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] in ("__init__", "__main__"):
            continue
        name = ".".join(parts)
        if not name.startswith(UNDOCUMENTED_PACKAGES):
            names.append(name)
    return names


def test_api_reference_covers_every_module():
    rendered = set()
    for page in API_PAGES.glob("*.md"):
        rendered.update(re.findall(r"^::: (\S+)", page.read_text(encoding="utf-8"), re.MULTILINE))
    missing = [name for name in public_modules() if name not in rendered]
    assert not missing, f"modules without a ::: block in docs/api/: {missing}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, (
        f"mkdocs build --strict failed with status {completed.returncode}:\n"
        f"{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}"
    )
    return folder


@pytest.mark.slow
def test_internal_links_and_images_resolve(site):
    broken = []
    for page in sorted(site.rglob("*.html")):
        parsed = parse_page(page.read_text(encoding="utf-8"))
        for target in parsed.images + parsed.links + parsed.resources:
            if is_external(target):
                continue
            resolved = resolve_target(site, page, target)
            if resolved is not None and not resolved.is_file():
                broken.append(f"{page.relative_to(site)}: {target}")
    assert not broken, "targets missing from the built site:\n" + "\n".join(broken[:50])


@pytest.mark.slow
def test_pages_load_no_external_resources(site):
    external = []
    for page in sorted(site.rglob("*.html")):
        parsed = parse_page(page.read_text(encoding="utf-8"))
        external += [
            f"{page.relative_to(site)}: {target}"
            for target in parsed.resources + parsed.images
            if is_external(target)
        ]
    assert not external, "pages load resources from the network:\n" + "\n".join(external[:50])


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serve the site and record each request's path and status."""

    requests: list[tuple[str, int]] = []

    def log_request(self, code="-", size="-"):
        self.requests.append((urlsplit(self.path).path, int(code)))

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    handler = type("SiteHandler", (RecordingHandler,), {"requests": []})

    def make_handler(*args, **kwargs):
        return handler(*args, directory=str(site), **kwargs)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        f"no Chromium executable ({', '.join(CHROMIUM_NAMES)}) on PATH; install one "
        "(apt-get install chromium) to run the browser checks"
    )


def run_chromium(chromium: str, profile: Path, *arguments: str) -> str:
    profile.mkdir(parents=True, exist_ok=True)
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, (
        f"chromium failed with status {completed.returncode}: {completed.stderr[-2000:]}"
    )
    return completed.stdout


def check_screenshot(path: Path) -> None:
    from PIL import Image, ImageStat

    assert path.is_file(), f"chromium wrote no screenshot to {path}"
    with Image.open(path) as image:
        assert image.size == WINDOW, f"screenshot size {image.size}, expected {WINDOW}"
        spread = ImageStat.Stat(image.convert("L")).stddev[0]
    assert spread > 10, f"the screenshot {path} is nearly uniform (stddev {spread:.1f})"


def open_page(chromium, server, tmp_path, page: str, name: str) -> tuple[PageParser, str, Path]:
    """Dump the rendered DOM of `page`, take a screenshot, and return both with the parsed DOM."""
    base, _ = server
    url = f"{base}/{page}"
    dom = run_chromium(chromium, tmp_path / f"profile-{name}-dom", "--dump-dom", url)
    screenshot = tmp_path / f"{name}.png"
    run_chromium(
        chromium, tmp_path / f"profile-{name}-shot", f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={screenshot}", "--hide-scrollbars", url,
    )
    return parse_page(dom), dom, screenshot


def served_ok(server, path: str) -> bool:
    _, requests = server
    return (path, 200) in requests


@pytest.mark.slow
def test_home_page_renders(chromium, server, tmp_path):
    dom, html, screenshot = open_page(chromium, server, tmp_path, "", "home")

    assert dom.headings_of("h1") == ["minorityprompt"]
    for heading in ("Install", "First command", "Where to go next"):
        assert heading in dom.headings_of("h2"), f"home page lacks the heading {heading!r}"
    assert "minorityprompt generate" in html
    assert any(link.startswith("tutorials/quickstart") for link in dom.links)
    check_screenshot(screenshot)


@pytest.mark.slow
def test_quickstart_tutorial_renders(chromium, server, tmp_path):
    dom, html, screenshot = open_page(
        chromium, server, tmp_path, "tutorials/quickstart/", "quickstart"
    )

    assert dom.headings_of("h1") == ["Quickstart"]
    for heading in ("From Python", "From the command line"):
        assert heading in dom.headings_of("h2"), f"quickstart lacks the heading {heading!r}"
    code = (ROOT / "docs" / "tutorials" / "code" / "quickstart.py").read_text(encoding="utf-8")
    first_call = next(line for line in code.splitlines() if line.startswith("minority = "))
    assert first_call in "".join(dom.text), f"the tutorial line {first_call!r} is not on the page"

    images = [source for source in dom.images if source.endswith("quickstart.png")]
    assert images, f"no quickstart.png image on the page; images: {dom.images}"
    assert served_ok(server, "/assets/tutorials/quickstart.png"), (
        "the browser did not load /assets/tutorials/quickstart.png"
    )
    check_screenshot(screenshot)
