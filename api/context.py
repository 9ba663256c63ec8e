"""What every request works with: settings, catalog, store and the signer, built once
per server from the settings (as ``liuhen.app.App`` builds them for one command; the API
may not import the command line)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from functools import cached_property

from catalog import Catalog, Signer, load_key_file
from config import Settings
from config.settings import zone_of
from storage import ObjectStore, open_store


@dataclass
class ApiContext:
    settings: Settings
    # The internal nginx location of the directory store, or None (docs/api.md).
    accel_redirect: str | None = None

    @cached_property
    def catalog(self) -> Catalog:
        catalog = Catalog(
            self.settings.catalog_url, busy_timeout_ms=self.settings.catalog.busy_timeout_ms
        )
        catalog.require_current_schema()
        return catalog

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings.store_url, self.settings.store)

    @cached_property
    def signer(self) -> Signer:
        return Signer(self.settings.station.id, load_key_file(self.settings.key_file))

    @cached_property
    def zone(self) -> tzinfo:
        return zone_of(self.settings.station.time_zone)

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.dispose()
