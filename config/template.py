"""The commented settings file `liuhen init` writes."""

from __future__ import annotations

from pathlib import Path

from config.i18n import N_, _

# The file is written in the language of whoever runs `liuhen init` (Chinese by default):
# comments only; keys and values are the same in every language.
TEMPLATE = N_("""\
# 留痕 (liuhen) settings for this installation.
# Every key can also be set by an environment variable LIUHEN_<SECTION>_<KEY>,
# e.g. LIUHEN_CATALOG_URL; the environment wins over this file.
# Data directory: {data_dir}

[station]
# Names this station in every custody event. Letters, digits, '.', '_', '-'.
id = "{station_id}"
name = ""
unit = ""
# Ed25519 private key (mode 0600); empty means <data dir>/keys/station.pem.
key_file = ""
# Heartbeat in the catalog every this many seconds (`liuhen district status`).
heartbeat_s = 30.0
# Signed custody chain head into the journal and the store at least this often.
anchor_interval_s = 300.0
# Prometheus metrics on http://<metrics_address>:<metrics_port>/metrics; 0: none.
metrics_port = 0
metrics_address = "127.0.0.1"
# IANA time zone of the recorders' clocks: local times they write without a zone (AVI
# IDIT, broadcast WAV bext, EXIF) are read in it.
time_zone = "Asia/Shanghai"

[catalog]
# Empty: SQLite in the data directory. A district uses PostgreSQL, e.g.
# url = "postgresql+psycopg://liuhen@db.example/liuhen"  (password: PGPASSWORD or ~/.pgpass)
url = ""
busy_timeout_ms = 30000

[store]
# Empty: a directory store in <data dir>/objects. A district uses S3, e.g.
# url = "s3://evidence/liuhen" with endpoint_url = "https://minio.example:9000".
# Credentials come from the environment (AWS_ACCESS_KEY_ID ...) or ~/.aws, never from here.
url = ""
endpoint_url = ""
region = "us-east-1"
addressing_style = "path"
multipart_threshold_mb = 64
multipart_chunk_mb = 16
max_attempts = 8
# Object Lock retention for each original when the bucket has Object Lock enabled.
object_lock_days = 183
object_lock_mode = "COMPLIANCE"

[digests]
# SHA-256 is always computed (it keys the object); SM3 is the national hash (GB/T 32905).
algorithms = ["sha256", "sm3"]

[ffmpeg]
ffmpeg = "ffmpeg"
ffprobe = "ffprobe"

[retention]
# Unattached recordings are kept at least this many days from capture.
unattached_days = 183
# A recording attaches by rule to an enforcement action of its officer when its capture
# interval overlaps the action's window widened by this many seconds on each side.
attach_margin_s = 300
# 永久 (permanent) cases: Object Lock retain-until set this many years ahead on attach.
permanent_years = 100

[ingest]
# The folder `liuhen station watch` watches; each docked recorder is a folder in it.
dock_root = ""
# auto: native file events, polling for removable and network mounts; or poll, native.
observer = "auto"
poll_interval_s = 1.0
# A file is taken once its size and mtime have been unchanged for this many seconds.
stable_s = 2.0
growing_timeout_s = 60.0
file_workers = 16
docking_workers = 2
chunk_mb = 4
# Delete files from the recorder once their stored copy is verified again (off: the
# dock clears it; 留痕 only says when that is safe).
clear_recorder = false
device_info_files = ["DEVICE.INF", "DEVINFO.TXT", "device_info.txt"]
# Recorder file names, first match wins; groups: serial, officer (警号), start, seq.
# Example (the first default):
# filename_patterns = [
#   '^(?P<serial>[A-Za-z0-9]{{7}})_(?P<officer>[0-9]{{6}})_(?P<start>[0-9]{{14}})_(?P<seq>[0-9]{{1,4}})\\.',
# ]
# A file marked important on the recorder (kept until reviewed): a name tag, removed
# before the patterns above are tried. The default:
# important_marker = '_(?:IMP|I)(?=\\.[^.]*$)|^IMP_'
retry_initial_s = 1.0
retry_max_s = 60.0

[media]
# Derivatives (the original is never changed): browser proxy, access copy, poster.
# Heights are even; CRF is x264's scale, 0-51 (higher = smaller); the preset is one of
# ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow, placebo.
proxy_max_height = 720
proxy_crf = 28
access_crf = 23
preset = "veryfast"
poster_at_s = 1.0
# Scales ffmpeg's time limits (re-encode 10 × duration, remux 2 × duration).
timeout_scale = 1.0
# Raw times (file name, embedded, mtime) that disagree by more than this are flagged.
time_threshold_s = 120.0
# Also make one joined access copy of a recording the device split into segments.
join_chapters = false
# A worker's claim on a work item lapses when not renewed for this long.
lease_s = 600.0

[compliance]
# 全过程记录 figures (docs/compliance.md). Uncovered stretches longer than this are gaps.
gap_threshold_s = 30.0
# each: every officer of an action must record it; any: one officer at a time is enough.
rule = "each"
# 完整: at least this share of the action's window and no gap longer than this.
complete_share = 0.95
complete_max_gap_s = 60.0
# A recording with a doubtful capture time this close to an action makes it uncertain.
doubt_margin_s = 300.0
# Unit picture: unattached after N days, not docked for N days, clock off by N seconds.
unattached_days = 30
undocked_days = 7
clock_off_s = 120.0

[access]
# Accounts, sessions and tokens (docs/security.md). Passwords: at least this long, with
# at least this many of the classes lower/upper/digit/other, not one of the last N, and
# changed every N days (0: never expires).
password_min_length = 12
password_classes = 3
password_history = 5
password_max_age_days = 0
# After N failed logins in a row the account locks for M minutes.
lockout_failures = 5
lockout_minutes = 15
# A session ends after this long unused, and this long after login.
session_idle_minutes = 30
session_absolute_hours = 12
# The longest validity of an API token.
token_max_days = 365
""")  # noqa: E501

# A section of its own, so that its translation is its own catalog entry.
AUDIT_TEMPLATE = N_("""\

[audit]
# Access-audit events (logins, views, playbacks, downloads) are kept at least this many
# days; at least 180 (GB/T 22239-2019 level 3: six months). See docs/security.md.
keep_days = 180
""")

# The HTTP API's section (its own message: the template's translation stays whole).
API_SECTION = N_("""
[api]
# `liuhen serve`: the HTTP API (docs/api.md). Plain HTTP on loopback, behind a TLS reverse
# proxy, unless a certificate and key (PEM files) are given.
host = "127.0.0.1"
port = 8000
tls_cert = ""
tls_key = ""
# Behind nginx: its internal location serving the directory store, e.g. "/_liuhen_store/".
accel_redirect = ""
# The station's own screen, no login: http://127.0.0.1:PORT/station in a browser on the
# station (loopback only; 0 = none).
station_screen_port = 8001
# The reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed.
forwarded_allow_ips = "127.0.0.1"
# Server processes answering on that port: about one per core.
workers = 1
""")


def render(data_dir: Path, station_id: str) -> str:
    return (
        _(TEMPLATE).format(data_dir=data_dir, station_id=station_id)
        + _(AUDIT_TEMPLATE)
        + _(API_SECTION)
    )
