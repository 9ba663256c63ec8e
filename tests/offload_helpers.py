"""Build a real station (catalog, store, signing key, journal) for offload tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from config import load_settings
from ingest.offload import Copied, copy_and_hash
from liuhen.app import App, initialize
from storage.digest import SharedLanes


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


def copy_listed(
    src: Path,
    dst: Path,
    pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],
    *,
    chunk: int,
    verify: bool = True,
    on_bytes: Callable[[int], None] | None = None,
    expected_size: int | None = None,
    engine: SharedLanes | None = None,
) -> Copied:
    """Copy as the station does: size and mtime as listed when the recorder was scanned;
    SM3 on ``pools[0]`` (or ``engine``'s lanes), the read-back on ``pools[1]``."""
    st = src.stat()
    fd = os.open(src, os.O_RDONLY)
    try:
        return copy_and_hash(
            fd,
            dst,
            expected_size=st.st_size if expected_size is None else expected_size,
            expected_mtime_ns=st.st_mtime_ns,
            chunk_size=chunk,
            sm3_pool=pools[0],
            verify_pool=pools[1] if verify else None,
            on_bytes=on_bytes,
            sm3_engine=engine,
        )
    finally:
        os.close(fd)
