"""The catalog: models, migrations, custody log, work queue."""

from catalog.custody import CustodyReport, append_event, register_station, verify_chain
from catalog.db import Catalog
from catalog.errors import CatalogError, CatalogUnavailable, KeyFileError, SchemaOutOfDate
from catalog.signing import Signer, generate_key_file, load_key_file

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
