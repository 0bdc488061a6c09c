"""/docs and /redoc render with no internet: every asset the pages reference is served by the gateway itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin

import pytest

from tests.service.rest_support import LiveServer, live_server, tiny_settings

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']|spec-url=["']([^"']+)["']""")


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(tiny_settings()) as live:
        yield live


def _references(html: str) -> list[str]:
    return [next(g for g in match if g) for match in ASSET.findall(html)]


@pytest.mark.parametrize(("page", "must_load"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
def test_docs_pages_reference_only_assets_the_gateway_serves(server: LiveServer, page: str, must_load: str) -> None:
    with server.client() as client:
        html = client.get(page)
        assert html.status_code == 200
        refs = _references(html.text)
        assert any(ref.endswith(must_load) for ref in refs), refs
        for ref in refs:
            assert not re.match(r"^(https?:)?//", ref), f"{page} loads {ref} from another host (no internet offline)"
            asset = client.get(urljoin(str(client.base_url) + page, ref))
            assert asset.status_code == 200, (ref, asset.status_code)
            assert len(asset.content) > 0
        assert "openapi" in client.get("/openapi.json").json()


def test_redoc_page_forbids_other_hosts_so_its_cdn_logo_is_never_fetched(server: LiveServer) -> None:
    """redoc.standalone.js draws a logo from cdn.redoc.ly: the page's CSP keeps the browser on this server."""
    with server.client() as client:
        page = client.get("/redoc")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"  # the logo's https://cdn.redoc.ly/... is refused before any request
    assert "https:" not in page.headers["content-security-policy"]
