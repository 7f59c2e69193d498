"""Serves plotly.js from the installed plotly Python package, so charts work offline and the
repository holds no copy of third-party JavaScript."""
from __future__ import annotations

import os
from functools import lru_cache

import plotly
from flask import Blueprint, Response, send_file

bp = Blueprint("static_lib", __name__, url_prefix="/static-lib")

# The URL carries plotly's version (see plotly_url), so a year of caching is safe: upgrading
# plotly changes the URL.
CACHE_SECONDS = 365 * 24 * 3600


@lru_cache(maxsize=1)
def plotly_js_path() -> str:
    path = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"plotly.min.js is missing from the plotly package at {path}; "
                                f"reinstall plotly (pip install --force-reinstall plotly)")
    return path


def plotly_version() -> str:
    version: str = plotly.__version__
    return version


@bp.route("/plotly.min.js")
def plotly_js() -> Response:
    response = send_file(plotly_js_path(), mimetype="text/javascript", max_age=CACHE_SECONDS,
                         conditional=True, etag=True)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response
