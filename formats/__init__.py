"""Byte-level readers of media container formats, shared by ingest and archive_export.

Nothing here imports another package of the project: the MP4 box walker is the one rule
for reading ISO base media boxes, used by the media checks and salvage (ingest) and by
the four-properties encryption check (archive_export), which may not import ingest.
"""
