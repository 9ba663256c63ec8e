"""Dock watcher, offload (one read: copy + SHA-256 + SM3), media work, workers."""
