"""Wiring: build the catalog, store and signer from settings, once per command."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from catalog import Catalog, Signer, generate_key_file, load_key_file, register_station
from config import Settings
from config.errors import DataDirMissing
from config.i18n import _
from config.template import render
from ingest.station import Station
from storage import ObjectStore, StoreReport, open_store


@dataclass
class App:
    settings: Settings

    def require_data_dir(self) -> None:
        """Refuse to work without the data directory: only ``liuhen init`` creates it, so
        a mistyped --data-dir or LIUHEN_HOME names a folder that is not there instead of
        quietly starting an empty station (a catalog, a store and a key) in it."""
        where = self.settings.data_dir
        if not where.is_dir():
            raise DataDirMissing(where, exists=where.exists())

    @cached_property
    def catalog(self) -> Catalog:
        self.require_data_dir()
        return Catalog(
            self.settings.catalog_url, busy_timeout_ms=self.settings.catalog.busy_timeout_ms
        )

    def ready_catalog(self) -> Catalog:
        """The catalog, after checking its schema is the one this code expects."""
        self.catalog.require_current_schema()
        return self.catalog

    @cached_property
    def store(self) -> ObjectStore:
        self.require_data_dir()
        return open_store(self.settings.store_url, self.settings.store)

    @cached_property
    def signer(self) -> Signer:
        self.require_data_dir()
        return Signer(self.settings.station.id, load_key_file(self.settings.key_file))

    def station(self) -> Station:
        return Station(
            self.settings, catalog=self.ready_catalog(), store=self.store, signer=self.signer
        )

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.dispose()


@dataclass
class InitReport:
    data_dir: Path
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    schema: str = ""
    store: StoreReport | None = None


def initialize(app: App) -> InitReport:
    """Create what is missing; keep what exists. Safe to run any number of times."""
    s = app.settings
    report = InitReport(s.data_dir)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    cfg = s.source or s.data_dir / "liuhen.toml"
    if cfg.exists():
        report.kept.append(_("settings file {path}").format(path=cfg))
    else:
        tmp = cfg.with_name(cfg.name + ".new")
        tmp.write_text(render(s.data_dir, s.station.id), encoding="utf-8")
        os.replace(tmp, cfg)
        report.created.append(_("settings file {path}").format(path=cfg))
    if s.key_file.exists():
        load_key_file(s.key_file)  # refuses a key readable by others
        report.kept.append(_("signing key {path}").format(path=s.key_file))
    else:
        generate_key_file(s.key_file)
        report.created.append(_("signing key {path} (Ed25519, mode 0600)").format(path=s.key_file))
    if app.catalog.sqlite_file is not None:  # (only init makes its folder)
        app.catalog.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    before, after = app.catalog.upgrade()
    report.schema = after
    if before == after:
        report.kept.append(
            _("catalog {url} (schema {schema})").format(url=app.catalog.display_url, schema=after)
        )
    else:
        report.created.append(
            _("catalog {url} (schema {before} → {after})").format(
                url=app.catalog.display_url, before=before or _("none"), after=after
            )
        )
    with app.catalog.transaction() as session:
        if register_station(session, app.signer, name=s.station.name, unit=s.station.unit):
            report.created.append(
                _("station {station} with key {key}…").format(
                    station=s.station.id, key=app.signer.key_id[:24]
                )
            )
        else:
            report.kept.append(_("station {station}").format(station=s.station.id))
    store = app.store
    made = store.create()
    if made == "created":
        report.created.append(_("object store {url}").format(url=store.url))
    elif made == "existed":
        report.kept.append(_("object store {url}").format(url=store.url))
    report.store = store.check()
    return report


def clean_store_at_start(store: ObjectStore) -> int:
    """What puts killed midway left in the store (temporary files, unfinished multipart
    uploads) idle for over an hour, removed when a service starts; the count is logged.
    An upload is judged by its newest part, so another station's put still running over
    a slow link is left alone however long ago it started.

    Only services call this (``station watch``, ``worker``): it walks the whole directory
    store, too much for every one-shot command."""
    removed = store.remove_stale_temp_files()
    if removed:
        logging.getLogger("liuhen.store").info(
            "removed %d stale temporary file(s) from %s", removed, store.url
        )
    return removed
