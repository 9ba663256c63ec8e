"""The typed settings of one 留痕 installation (a station, a worker, an archivist's desk).

One frozen object, built once at start-up by :func:`config.loader.load_settings`, and
passed down. Defaults here are the embedded default: SQLite and a local directory store
under the data directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.i18n import _

DIGEST_ALGORITHMS = ("sha256", "sm3", "sha512")
# x264's presets, fastest first (media.preset; the derivative profiles check the same list).
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)

# Metadata key of a numeric setting's allowed range (inclusive), read by the loader.
RANGE = "range"
DAY_S = 86_400


def bounded(default: Any, low: float, high: float) -> Any:
    """A numeric setting and its allowed range, both inclusive. The loader refuses a value
    outside it, and NaN or infinity, at start-up: a nonsense number would otherwise pass
    and crash much later (a timedelta overflow, a sleep of 1e300 s)."""
    return field(default=default, metadata={RANGE: (low, high)})


# China Standard Time: what recorder clocks show, and the project's one definition of it.
# China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact for
# any recording and needs no tz database. Where a setting names the zone (station.time_zone),
# this is only the default of code that runs without settings.
CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")


def zone_of(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. "Asia/Shanghai"); ValueError when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # ValueError: "../x", "" and such
        raise ValueError(
            _("must be an IANA time zone name, got {value}").format(value=repr(name))
        ) from exc


@dataclass(frozen=True)
class StationSettings:
    # A short stable identifier; it names the station in every custody event.
    id: str = "station-01"
    name: str = ""
    unit: str = ""
    # The station's Ed25519 private key (PEM, mode 0600). Empty: <data dir>/keys/station.pem.
    key_file: str = ""
    # `station watch` and `worker` write a heartbeat to the catalog this often; a process
    # silent for 3 intervals shows as lost in `district status`.
    heartbeat_s: float = bounded(30.0, 0.01, 3600)
    # While it works, the station signs its custody chain head at least this often (and
    # after every docking) into its journal and the store (docs/custody.md).
    anchor_interval_s: float = bounded(300.0, 1.0, 86400)
    # Prometheus metrics of `station watch` / `worker` on http://metrics_address:port/metrics;
    # 0: no endpoint.
    metrics_port: int = bounded(0, 0, 65535)
    metrics_address: str = "127.0.0.1"
    # The IANA time zone of the recorders' clocks (their file names, AVI IDIT, broadcast
    # WAV bext and EXIF times are local wall-clock times without a zone).
    time_zone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class CatalogSettings:
    # SQLAlchemy URL. Empty: sqlite:///<data dir>/catalog.sqlite3.
    url: str = ""
    # How long SQLite waits for a lock held by another process before giving up.
    busy_timeout_ms: int = bounded(30_000, 1, 3_600_000)


@dataclass(frozen=True)
class StoreSettings:
    # file:///path or s3://bucket/prefix. Empty: file://<data dir>/objects.
    url: str = ""
    # S3 only: a non-AWS endpoint (MinIO, Ceph RGW, OSS), region and addressing.
    endpoint_url: str = ""
    region: str = "us-east-1"
    addressing_style: str = "path"
    # Objects above this size go up in parts, each with a server-checked SHA-256.
    multipart_threshold_mb: int = bounded(64, 1, 5 * 1024 * 1024)
    # S3 parts are 5 MiB to 5 GiB.
    multipart_chunk_mb: int = bounded(16, 5, 5 * 1024)
    # Attempts per request on throttling and connection errors (exponential backoff).
    max_attempts: int = bounded(8, 1, 100)
    connect_timeout_s: float = bounded(5.0, 0.01, 3600)
    read_timeout_s: float = bounded(60.0, 0.01, 3600)
    # Days of Object Lock retention set on each original when the bucket has Object Lock
    # enabled; 0 leaves retention to the bucket's default rule.
    object_lock_days: int = bounded(183, 0, 36_600)
    object_lock_mode: str = "COMPLIANCE"


@dataclass(frozen=True)
class DigestSettings:
    # SHA-256 is always computed (it is the object key); SM3 is the national hash.
    algorithms: tuple[str, ...] = ("sha256", "sm3")


@dataclass(frozen=True)
class FfmpegSettings:
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"


@dataclass(frozen=True)
class RetentionSettings:
    # Unattached recordings are kept at least this long from capture (6 months).
    unattached_days: int = bounded(183, 1, 36_600)
    # Attachment rule margin around an enforcement action's window.
    attach_margin_s: int = bounded(300, 0, DAY_S)
    # 永久 (permanent) cases: the Object Lock retain-until date set on their recordings.
    permanent_years: int = bounded(100, 1, 1000)


# GA/T 947-style recorder file names. Named groups: serial (device), officer (警号),
# start (capture start, YYYYMMDDHHMMSS), seq (segment number). First match wins.
DEFAULT_FILENAME_PATTERNS = (
    r"^(?P<serial>[A-Za-z0-9]{7})_(?P<officer>[0-9]{6})_(?P<start>[0-9]{14})_(?P<seq>[0-9]{1,4})\.",
    r"^(?P<officer>[0-9]{6})_(?P<start>[0-9]{14})(?:_(?P<seq>[0-9]{1,4}))?\.",
    r"^(?P<serial>[A-Za-z0-9]{7})_(?P<start>[0-9]{8}_[0-9]{6})",
)

# Recorders that mark a file important tag its name: "..._0001_IMP.MP4", "..._0001_I.MP4"
# or "IMP_...". (Vendor practice varies; the exact tag is unverified, hence configurable.)
DEFAULT_IMPORTANT_MARKER = r"_(?:IMP|I)(?=\.[^.]*$)|^IMP_"


@dataclass(frozen=True)
class IngestSettings:
    # The dock root `liuhen station watch` watches; each recorder is a folder in it.
    dock_root: str = ""
    # "auto": native file events, polling where they don't work (removable and network
    # mounts); "poll": always poll; "native": never poll.
    observer: str = "auto"
    poll_interval_s: float = bounded(1.0, 0.01, 3600)
    # A file is taken when its size and mtime have not changed for this long.
    stable_s: float = bounded(2.0, 0, 3600)
    # `liuhen ingest` gives up on a file still growing after this long.
    growing_timeout_s: float = bounded(60.0, 0, DAY_S)
    # Files copied at once per docking, and dockings at once per station. 16: the SM3
    # engine's lanes (shared by the station's copies) fill when ~16 files are copied at
    # once, and the fsync waits of small files overlap.
    file_workers: int = bounded(16, 1, 64)
    docking_workers: int = bounded(2, 1, 64)
    chunk_mb: int = bounded(4, 1, 1024)
    # Delete files from the recorder after their stored copy is verified again. Off:
    # clearing is normally done by the dock; 留痕 only says when it is safe.
    clear_recorder: bool = False
    device_info_files: tuple[str, ...] = ("DEVICE.INF", "DEVINFO.TXT", "device_info.txt")
    filename_patterns: tuple[str, ...] = DEFAULT_FILENAME_PATTERNS
    # How a recorder marks a file important (kept until reviewed): a regular expression
    # searched in the file name; the matched text is removed before the patterns above
    # are tried. Empty: no marker.
    important_marker: str = DEFAULT_IMPORTANT_MARKER
    # Waits between retries while the catalog or store is unreachable.
    retry_initial_s: float = bounded(1.0, 0.01, 3600)
    retry_max_s: float = bounded(60.0, 0.01, DAY_S)


@dataclass(frozen=True)
class MediaSettings:
    # Browser proxy: at most this tall (even), x264 quality (higher = smaller), and preset
    # (one of X264_PRESETS).
    proxy_max_height: int = bounded(720, 16, 4320)
    proxy_crf: int = bounded(28, 0, 51)  # x264's CRF scale
    # Access copy when the original must be re-encoded (HEVC, MJPEG, PCM/AMR audio).
    access_crf: int = bounded(23, 0, 51)
    preset: str = "veryfast"
    poster_at_s: float = bounded(1.0, 0, DAY_S)
    # Scales ffmpeg's time limits (re-encode: 10 × the duration, at least 60 s; remux:
    # 2 × the duration, at least 30 s); ffmpeg is stopped past them.
    timeout_scale: float = bounded(1.0, 0.01, 1000)
    # Flag raw times that disagree by more than this.
    time_threshold_s: float = bounded(120.0, 0.001, 366 * DAY_S)
    # Also make one joined access copy of a recording the device split into segments.
    join_chapters: bool = False
    # A claimed work item is taken over by another worker when not renewed for this long.
    lease_s: float = bounded(600.0, 1, DAY_S)


@dataclass(frozen=True)
class ComplianceSettings:
    # 全过程记录 (docs/compliance.md). Uncovered stretches of an action longer than this are
    # listed as gaps.
    gap_threshold_s: float = bounded(30.0, 0, DAY_S)
    # "each": every officer of an action must record it whole; "any": one recording at a
    # time, from any of its officers, is enough.
    rule: str = "each"
    # 完整 (fully recorded): at least this share of the window and no gap longer than this.
    complete_share: float = bounded(0.95, 0, 1)
    complete_max_gap_s: float = bounded(60.0, 0, DAY_S)
    # A recording whose capture time is in doubt makes an action uncertain when its claimed
    # time is within this many seconds of the action's window.
    doubt_margin_s: float = bounded(300.0, 0, DAY_S)
    # The unit's picture: recordings still attached to no case this many days after
    # capture, devices not docked for this many days, and a docking clock offset beyond
    # this many seconds (either way) counted as a clock found off.
    unattached_days: int = bounded(30, 1, 36_600)
    undocked_days: int = bounded(7, 1, 36_600)
    clock_off_s: float = bounded(120.0, 0, DAY_S)


# GB/T 22239-2019 (等保 2.0) level 3: audit records are kept at least six months.
AUDIT_MIN_KEEP_DAYS = 180


@dataclass(frozen=True)
class AuditSettings:
    # Access-audit events (logins, views, playbacks, downloads…) are kept at least this
    # many days; never fewer than AUDIT_MIN_KEEP_DAYS (checked by the loader, with its
    # own message). Nothing deletes custody events today, so they are kept for as long
    # as the catalog: this is the floor any pruning or archiving of the catalog respects.
    keep_days: int = bounded(AUDIT_MIN_KEEP_DAYS, 0, 36_600)


@dataclass(frozen=True)
class AccessSettings:
    # Passwords (docs/security.md): at least this long, with characters of at least this
    # many of the four classes (lower case, upper case, digits, others), none of the last
    # N passwords again, and changed every N days (0: no expiry).
    password_min_length: int = bounded(12, 8, 256)
    password_classes: int = bounded(3, 1, 4)
    password_history: int = bounded(5, 0, 100)
    password_max_age_days: int = bounded(0, 0, 3650)
    # After this many failed logins in a row an account locks for this many minutes.
    lockout_failures: int = bounded(5, 1, 100)
    lockout_minutes: int = bounded(15, 1, 10_080)
    # Sessions end after this long unused, and this long after login whatever happens.
    session_idle_minutes: int = bounded(30, 1, 1440)
    session_absolute_hours: int = bounded(12, 1, 720)
    # API tokens: the longest validity an administrator may give one.
    token_max_days: int = bounded(365, 1, 3650)
    # Argon2id cost; a stored hash made with other values is rehashed at the next login.
    argon2_time_cost: int = bounded(3, 1, 100)
    argon2_memory_kib: int = bounded(65_536, 8, 4_194_304)
    argon2_parallelism: int = bounded(4, 1, 64)


@dataclass(frozen=True)
class ApiSettings:
    # `liuhen serve` (docs/api.md): where it listens; its command-line options override.
    host: str = "127.0.0.1"
    port: int = bounded(8000, 1, 65535)
    # TLS certificate and key (PEM). Empty: plain HTTP, behind a TLS reverse proxy.
    tls_cert: str = ""
    tls_key: str = ""
    # Behind nginx: its internal location serving the directory store (X-Accel-Redirect).
    accel_redirect: str = ""
    # The station's own screen (/station with no login): a second listener, on 127.0.0.1
    # only and with no proxy headers, so no forwarded header can make a visitor the
    # station. 0: none (then /station needs a login everywhere).
    station_screen_port: int = bounded(8001, 0, 65535)
    # The reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed on the
    # main listener (comma-separated addresses, uvicorn's forwarded_allow_ips), set here so
    # that no FORWARDED_ALLOW_IPS in the environment widens it.
    forwarded_allow_ips: str = "127.0.0.1"
    # Server processes answering on the port (`liuhen serve --workers`): one Python
    # process uses one core; on a machine with several, give about one per core.
    workers: int = bounded(1, 1, 64)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    # The file the settings were read from, or None when none existed.
    source: Path | None = None
    station: StationSettings = field(default_factory=StationSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    digests: DigestSettings = field(default_factory=DigestSettings)
    ffmpeg: FfmpegSettings = field(default_factory=FfmpegSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    compliance: ComplianceSettings = field(default_factory=ComplianceSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    api: ApiSettings = field(default_factory=ApiSettings)

    @property
    def catalog_url(self) -> str:
        return self.catalog.url or f"sqlite:///{self.data_dir / 'catalog.sqlite3'}"

    @property
    def store_url(self) -> str:
        return self.store.url or (self.data_dir / "objects").as_uri()

    @property
    def key_file(self) -> Path:
        if self.station.key_file:
            return Path(self.station.key_file).expanduser()
        return self.data_dir / "keys" / "station.pem"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    @property
    def work_dir(self) -> Path:
        """Scratch space of media workers (inputs fetched from S3, ffmpeg outputs)."""
        return self.data_dir / "work"

    @property
    def journal_path(self) -> Path:
        """The station's local journal: dockings and files, durable without the catalog."""
        return self.data_dir / "station-journal.sqlite3"


# The sections of the settings file, in the order `config show` prints them.
SECTIONS: dict[str, type] = {
    "station": StationSettings,
    "catalog": CatalogSettings,
    "store": StoreSettings,
    "digests": DigestSettings,
    "ffmpeg": FfmpegSettings,
    "retention": RetentionSettings,
    "ingest": IngestSettings,
    "media": MediaSettings,
    "compliance": ComplianceSettings,
    "access": AccessSettings,
    "audit": AuditSettings,
    "api": ApiSettings,
}
