"""The catalog: models, migrations, custody log, work queue.

The names below are loaded on first use (PEP 562), so that importing a light module of
this package (``catalog.signing``, ``catalog.canonical``) does not load SQLAlchemy and
the models: an offline bag verification starts that much sooner.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catalog.custody import CustodyReport, append_event, register_station, verify_chain
    from catalog.db import Catalog
    from catalog.errors import CatalogError, CatalogUnavailable, KeyFileError, SchemaOutOfDate
    from catalog.signing import Signer, generate_key_file, load_key_file

_WHERE = {
    "Catalog": "catalog.db",
    "CatalogError": "catalog.errors",
    "CatalogUnavailable": "catalog.errors",
    "CustodyReport": "catalog.custody",
    "KeyFileError": "catalog.errors",
    "SchemaOutOfDate": "catalog.errors",
    "Signer": "catalog.signing",
    "append_event": "catalog.custody",
    "generate_key_file": "catalog.signing",
    "load_key_file": "catalog.signing",
    "register_station": "catalog.custody",
    "verify_chain": "catalog.custody",
}

__all__ = [
    "Catalog",
    "CatalogError",
    "CatalogUnavailable",
    "CustodyReport",
    "KeyFileError",
    "SchemaOutOfDate",
    "Signer",
    "append_event",
    "generate_key_file",
    "load_key_file",
    "register_station",
    "verify_chain",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'catalog' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
