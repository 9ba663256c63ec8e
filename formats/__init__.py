"""Format rules shared by ingest, the catalog and archive_export.

Byte-level readers of media container formats, and the rule for reading recorder file
names. Nothing here imports another package of the project but ``config``: the MP4 box
walker is the one rule for reading ISO base media boxes, used by the media checks and
salvage (ingest) and by the four-properties encryption check (archive_export), which may
not import ingest; the file-name rule (:mod:`formats.filenames`) is read by ingest as it
files a docking and by the catalog for ``liuhen show``, which may not import ingest.
"""
