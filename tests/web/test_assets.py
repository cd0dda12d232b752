"""Every asset is in the package: no template, script, stylesheet or rendered page names another
host, and everything a page links to is served by the app itself."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "web"
# An XML namespace is a name, never fetched; everything else with a scheme or // is a fetch elsewhere.
NAMESPACES = ("http://www.w3.org/2000/svg",)
EXTERNAL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def external_urls(text: str) -> list[str]:
    return [m.group(0) for m in EXTERNAL.finditer(text) if not any(m.group(0) in ns for ns in NAMESPACES)]


def test_the_checker_finds_an_external_url() -> None:
    assert external_urls('<script src="https://cdn.example.com/x.js">') == ["https://cdn.example.com"]
    assert external_urls('<link href="//fonts.googleapis.com/css">') == ["//fonts.googleapis.com"]
    assert external_urls('createElementNS("http://www.w3.org/2000/svg", "svg")') == []


def test_no_asset_names_another_host() -> None:
    files = sorted((ROOT / "templates").glob("*")) + sorted((ROOT / "static").glob("*"))
    assert files
    found = {str(f.relative_to(ROOT)): external_urls(f.read_text(encoding="utf-8")) for f in files}
    assert {name: urls for name, urls in found.items() if urls} == {}


def test_rendered_pages_link_only_to_this_server(client) -> None:
    for url in ("/dags", "/dags/hello", "/runs/hello/h1", "/queues", "/workers", "/system"):
        page = client.get(url).data.decode()
        assert external_urls(page) == [], url
        for link in re.findall(r'(?:src|href)="([^"]+)"', page):
            assert link.startswith("/"), (url, link)
            assert client.get(link).status_code in (200, 302), (url, link)
