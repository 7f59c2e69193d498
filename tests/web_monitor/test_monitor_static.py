"""plotly.js is served from the installed plotly package, cached, and referenced by the pages."""
from __future__ import annotations

import plotly


def test_plotly_js_is_served_with_long_caching(client):
    response = client.get(f"/static-lib/plotly.min.js?v={plotly.__version__}")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.get_data().startswith(b"/**") and len(response.get_data()) > 1_000_000
    cache = response.headers["Cache-Control"]
    assert "public" in cache and "max-age=31536000" in cache and "immutable" in cache
    assert response.headers["ETag"]
    again = client.get("/static-lib/plotly.min.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_pages_use_the_versioned_plotly_url(client):
    for url in ("/", "/services/echo"):
        html = client.get(url).get_data(as_text=True)
        assert f'src="/static-lib/plotly.min.js?v={plotly.__version__}"' in html


def test_own_static_files(client):
    for name in ("monitor.css", "monitor.js", "overview.js", "service.js", "favicon.svg"):
        assert client.get(f"/static/{name}").status_code == 200
