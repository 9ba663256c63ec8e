"""Every environment variable 留痕 reads, declared in one place.

Settings fields are overridden by ``LIUHEN_<SECTION>_<FIELD>`` (upper case); the names
below are the ones that are not derived from a settings field.
"""

from __future__ import annotations

HOME = "LIUHEN_HOME"  # the data directory, when --data-dir is not given
CONFIG = "LIUHEN_CONFIG"  # the settings file, when --config is not given
PREFIX = "LIUHEN_"  # prefix of every per-field override, e.g. LIUHEN_CATALOG_URL
# An API token (liuhen token issue) the CLI acts with instead of a login session: for
# scripts and integrations (docs/security.md).
TOKEN = "LIUHEN_TOKEN"

# Test-suite only: an external S3 endpoint (MinIO, Ceph RGW) to run the store suite on,
# and the PostgreSQL server to run the catalog suite on.
TEST_S3_URL = "LIUHEN_TEST_S3_URL"
TEST_PG_URL = "LIUHEN_TEST_PG_URL"

# XDG base directory fallback for the default data directory.
XDG_DATA_HOME = "XDG_DATA_HOME"


def field_variable(section: str, field: str) -> str:
    """The environment variable that overrides ``[section] field``."""
    return f"{PREFIX}{section}_{field}".upper()
