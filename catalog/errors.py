"""Errors of the catalog."""

from __future__ import annotations

from config.errors import EXIT_CONFIG, EXIT_DATAERR, EXIT_UNAVAILABLE, LiuhenError


class CatalogError(LiuhenError):
    exit_code = EXIT_DATAERR


class CatalogUnavailable(CatalogError):
    exit_code = EXIT_UNAVAILABLE


class SchemaOutOfDate(CatalogError):
    exit_code = EXIT_CONFIG


class KeyFileError(CatalogError):
    exit_code = EXIT_CONFIG
