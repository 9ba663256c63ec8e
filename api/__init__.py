"""The HTTP API of 留痕 (``liuhen serve``): versioned JSON under ``/api/v1``, described by
the OpenAPI document at ``/api/v1/openapi.json``. Handlers are thin: they call the same
catalog, storage and export functions the command line calls (see docs/api.md)."""
