"""Build a real station (catalog, store, signing key, journal) for offload tests."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from config import load_settings
from liuhen.app import App, initialize


def make_app(
    data_dir: Path,
    *,
    catalog_url: str | None = None,
    store_url: str | None = None,
    store_env: dict[str, str] | None = None,
    **ingest: Any,
) -> App:
    environ: dict[str, str] = dict(store_env or {})
    if catalog_url:
        environ["LIUHEN_CATALOG_URL"] = catalog_url
    if store_url:
        environ["LIUHEN_STORE_URL"] = store_url
    settings = load_settings(data_dir=data_dir, environ=environ)
    opts = {"stable_s": 0.0, "retry_initial_s": 0.1, "retry_max_s": 0.5, **ingest}
    settings = replace(settings, ingest=replace(settings.ingest, **opts))
    app = App(settings)
    initialize(app)
    return app


def file_digests(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), hashlib.new("sm3", data).hexdigest()
