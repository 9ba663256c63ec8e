"""`liuhen doctor`: check a station or worker installation end to end, and say what to fix.

Every check runs, whatever an earlier one found (a check that needs something broken is
reported as skipped, with the reason), so one run lists every problem: settings, data
directory, signing key, catalog (reachable, schema, key registered), clock, object
store (bucket, versioning, Object Lock, a write/read/delete probe), ffmpeg and ffprobe,
staging space, the station journal and the dock root. Each problem comes with its fix.

This module composes the packages (it is wiring, like ``liuhen.app``); it changes
nothing except a probe object in the store and a probe file in staging, both removed.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from catalog import Catalog, SchemaOutOfDate
from catalog.heartbeat import LOST, status_of
from catalog.models import Heartbeat, SigningKey, Station
from catalog.signing import key_id_of, public_raw
from config import LiuhenError, Settings, load_settings
from config.i18n import N_, _
from config.loader import mask_url
from config.settings import CHINA_STANDARD_TIME, FfmpegSettings, zone_of
from config.timetext import show_time
from ingest.journal import JournalUnreadable, read_summary

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
ROLES = ("all", "station", "worker")

# Clock offsets against the catalog server: custody times and time evidence drift
# beyond a few seconds; S3 refuses signed requests beyond 15 minutes.
CLOCK_WARN_S = 5.0
CLOCK_FAIL_S = 300.0
# Staging must hold what a recorder carries (tens of GB); below these, dockings pause.
SPACE_WARN_BYTES = 5 << 30
SPACE_FAIL_BYTES = 256 << 20
TOOL_TIMEOUT_S = 15.0
# The earliest plausible clock: a machine whose battery-backed clock reset reads 1970.
EARLIEST_SANE = datetime(2025, 1, 1, tzinfo=UTC)


# The checks' names as people read them; ``Check.name`` stays English (the JSON's key).
CHECK_TITLES = {
    "settings": N_("settings"),
    "data directory": N_("data directory"),
    "signing key": N_("signing key"),
    "catalog": N_("catalog"),
    "catalog schema": N_("catalog schema"),
    "key registered": N_("key registered"),
    "clock": N_("clock"),
    "store": N_("store"),
    "store reachable": N_("store reachable"),
    "store writable": N_("store writable"),
    "store free space": N_("store free space"),
    "store round trip": N_("store round trip"),
    "store list": N_("store list"),
    "store upload checks": N_("store upload checks"),
    "store versioning": N_("store versioning"),
    "store object lock": N_("store object lock"),
    "custody chain heads": N_("custody chain heads"),
    "ffmpeg": N_("ffmpeg"),
    "ffprobe": N_("ffprobe"),
    "ffmpeg encoders": N_("ffmpeg encoders"),
    "staging space": N_("staging space"),
    "sm3 engine": N_("sm3 engine"),
    "signature engine": N_("signature engine"),
    "station journal": N_("station journal"),
    "dock root": N_("dock root"),
    "services": N_("services"),
}


# Fixed details other packages give (the store's checks, the signature engine): shown in
# the reader's language; details with values in them are shown as given.
KNOWN_DETAILS = (
    N_("write permission on the root"),
    N_("write, read back, verify and delete a probe object"),
    N_("not available on a directory store; retention is enforced by the catalog"),
    N_("list objects under the prefix"),
    N_("never enabled"),
    N_("libsodium, OpenSSL for rejections"),
)


def known_text(detail: str) -> str:
    """A detail of KNOWN_DETAILS translated; any other as it is."""
    return _(detail) if detail in KNOWN_DETAILS else detail


def check_title(name: str) -> str:
    """A check's name in the reader's language (an unknown one as it is)."""
    return _(CHECK_TITLES[name]) if name in CHECK_TITLES else name


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class DoctorReport:
    role: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    def count(self, status: str) -> int:
        return sum(1 for c in self.checks if c.status == status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "role": self.role,
            "problems": self.count(FAIL),
            "warnings": self.count(WARN),
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass
class _State:
    """What earlier checks learnt, for the later ones (never a reason to stop)."""

    settings: Settings | None = None
    key_id: str | None = None
    catalog: Catalog | None = None
    catalog_ok: bool = False
    schema_ok: bool = False
    store: Any = None  # the object store, once it opened (custody chain heads are read there)


def run_doctor(
    data_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    *,
    role: str = "all",
    environ: Mapping[str, str] | None = None,
) -> DoctorReport:
    if role not in ROLES:
        raise ValueError(role)
    report = DoctorReport(role)
    st = _State()
    add = report.checks.append
    try:
        add(_settings(st, data_dir, config_file, environ))
        add(_data_dir(st))
        add(_key(st))
        add(_catalog(st))
        add(_schema(st))
        add(_registration(st))
        add(_clock(st))
        report.checks.extend(_store(st))
        add(_chain_heads(st))
        report.checks.extend(_media_tools(st, role))
        add(_space(st, role))
        add(_sm3_engine())
        add(_signature_engine())
        if role in ("all", "station"):
            add(_journal(st))
            add(_dock_root(st))
        add(_processes(st))
    finally:
        if st.catalog is not None:
            st.catalog.dispose()
    return report


def _guarded(name: str, fn: Callable[[], Check]) -> Check:
    """A check that itself fails unexpectedly is reported, and the others still run."""
    try:
        return fn()
    except LiuhenError as exc:
        return Check(name, FAIL, exc.message, exc.hint or "")
    except Exception as exc:
        return Check(
            name,
            FAIL,
            _("the check itself failed: {name}: {exc}").format(name=type(exc).__name__, exc=exc),
            _("run 'liuhen --verbose doctor' and report it"),
        )


def _zone(st: _State) -> tzinfo:
    """The station's zone for the times shown (China Standard Time before settings load)."""
    if st.settings is None:
        return CHINA_STANDARD_TIME
    try:
        return zone_of(st.settings.station.time_zone)
    except ValueError:
        return CHINA_STANDARD_TIME


def _skip(name: str, why: str) -> Check:
    return Check(name, SKIP, _("not checked: {why}").format(why=why))


# -- settings, data directory, key --------------------------------------------------------------


def _settings(
    st: _State,
    data_dir: str | Path | None,
    config_file: str | Path | None,
    environ: Mapping[str, str] | None,
) -> Check:
    try:
        st.settings = load_settings(data_dir, config_file, environ)
    except LiuhenError as exc:
        return Check(
            "settings",
            FAIL,
            exc.message,
            exc.hint or _("fix the settings file (compare with 'liuhen init' output)"),
        )
    s = st.settings
    where = str(s.source) if s.source else _("no settings file (defaults and environment)")
    detail = _("{where}; station {id}; catalog {catalog}; store {store}").format(
        where=where, id=s.station.id, catalog=mask_url(s.catalog_url), store=mask_url(s.store_url)
    )
    if s.source is None:
        return Check(
            "settings",
            WARN,
            detail,
            _("run 'liuhen init' to write {path} with every key").format(
                path=s.data_dir / "liuhen.toml"
            ),
        )
    return Check("settings", OK, detail)


def _data_dir(st: _State) -> Check:
    s = st.settings
    if s is None:
        return _skip("data directory", _("settings did not load"))
    d = s.data_dir
    if not d.is_dir():
        return Check(
            "data directory",
            FAIL,
            _("{d} does not exist").format(d=d),
            _("run 'liuhen init' (or pass --data-dir / set LIUHEN_HOME to the right one)"),
        )
    if not os.access(d, os.W_OK | os.X_OK):
        return Check(
            "data directory",
            FAIL,
            _("{d} is not writable by this user").format(d=d),
            _("run the service as the owner of {d}, or 'chown -R <user> {d}'").format(d=d),
        )
    return Check("data directory", OK, str(d))


def _key(st: _State) -> Check:
    s = st.settings
    if s is None:
        return _skip("signing key", _("settings did not load"))
    return _guarded("signing key", lambda: _key_check(st, s.key_file))


def _key_check(st: _State, path: Path) -> Check:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not path.exists():
        return Check(
            "signing key",
            FAIL,
            _("station signing key {path} not found").format(path=path),
            _(
                "run 'liuhen init' to create and register it, or set station.key_file to "
                "the station's key"
            ),
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Check(
            "signing key",
            FAIL,
            _("{path}: cannot read: {strerror}").format(path=path, strerror=exc.strerror),
            _("run the service as the key's owner, or 'chown <user> {path}'").format(path=path),
        )
    problems: list[str] = []
    fixes: list[str] = []
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
        problems.append(_("{path} is not an unencrypted PEM private key").format(path=path))
        fixes.append(
            _(
                "restore the station's key from its backup, or rotate to a new key "
                "(docs/operations.md, 'Signing-key rotation')"
            )
        )
    if key is not None and not isinstance(key, Ed25519PrivateKey):
        problems.append(_("{path} is not an Ed25519 key").format(path=path))
        fixes.append(_("use an Ed25519 key ('liuhen init' makes one)"))
    elif isinstance(key, Ed25519PrivateKey):
        st.key_id = key_id_of(public_raw(key.public_key()))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        problems.append(
            _("{path} is readable by others (mode {mode:o})").format(path=path, mode=mode)
        )
        fixes.append(_("run 'chmod 600 {path}'").format(path=path))
    if problems:
        return Check("signing key", FAIL, "; ".join(problems), "; ".join(fixes))
    return Check("signing key", OK, f"{path} (mode 600, {st.key_id})")


# -- catalog ----------------------------------------------------------------------------------


def _catalog(st: _State) -> Check:
    s = st.settings
    if s is None:
        return _skip("catalog", _("settings did not load"))
    return _guarded("catalog", lambda: _catalog_check(st, s))


def _catalog_fix(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _("run 'liuhen init', or fix catalog.url")
    return _(
        "check that PostgreSQL at {host}:{port} is running and accepts this "
        "host (pg_hba.conf), that database '{database}' and role '{username}' "
        "exist, and the password (PGPASSWORD or ~/.pgpass); or fix catalog.url"
    ).format(
        host=parsed.host or "localhost",
        port=parsed.port or 5432,
        database=parsed.database,
        username=parsed.username,
    )


def _catalog_check(st: _State, s: Settings) -> Check:
    url = s.catalog_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        # Connecting would create an empty database file: look before touching it.
        if db and db != ":memory:" and not Path(db).exists():
            return Check("catalog", FAIL, _("no catalog at {db}").format(db=db), _catalog_fix(url))
    cat = Catalog(url, busy_timeout_ms=s.catalog.busy_timeout_ms)
    st.catalog = cat
    try:
        with cat.session() as session:
            if cat.is_postgres:
                version = session.execute(text("SHOW server_version")).scalar_one()
                detail = _("PostgreSQL {version} at {display_url}").format(
                    version=version, display_url=cat.display_url
                )
            else:
                version = session.execute(text("SELECT sqlite_version()")).scalar_one()
                detail = _("SQLite {version} at {database}").format(
                    version=version, database=parsed.database
                )
    except LiuhenError as exc:
        return Check("catalog", FAIL, exc.message, _catalog_fix(url))
    except Exception as exc:
        return Check(
            "catalog",
            FAIL,
            f"catalog {mask_url(url)}: {type(exc).__name__}: "
            f"{str(getattr(exc, 'orig', None) or exc).strip()}",
            _catalog_fix(url),
        )
    st.catalog_ok = True
    return Check("catalog", OK, detail)


def _schema(st: _State) -> Check:
    if st.catalog is None or not st.catalog_ok:
        return _skip("catalog schema", _("the catalog is not reachable"))
    cat = st.catalog

    def check() -> Check:
        try:
            cat.require_current_schema()
        except SchemaOutOfDate as exc:
            return Check("catalog schema", FAIL, exc.message, exc.hint or "")
        st.schema_ok = True
        return Check(
            "catalog schema",
            OK,
            _("revision {current_revision} (current)").format(
                current_revision=cat.current_revision()
            ),
        )

    return _guarded("catalog schema", check)


def _registration(st: _State) -> Check:
    name = "key registered"
    if st.settings is None:
        return _skip(name, _("settings did not load"))
    if not st.schema_ok or st.catalog is None:
        return _skip(name, _("the catalog is not reachable or its schema is not current"))
    if st.key_id is None:
        return _skip(name, _("the signing key could not be read"))
    cat, key_id, sid = st.catalog, st.key_id, st.settings.station.id

    def check() -> Check:
        from catalog.custody import catalog_keys

        with cat.session() as s:
            row = s.get(SigningKey, key_id)
            station = s.get(Station, sid)
            # Retired as the custody rule sees it: the row, or its key-retired event.
            rule = catalog_keys(s).get(key_id)
            retired = rule.retired_at if rule is not None else None
            if row is None:
                what = (
                    _("station {sid} is not registered in the catalog").format(sid=sid)
                    if station is None
                    else _("station {sid} is registered, but not with this key").format(sid=sid)
                )
                return Check(
                    name,
                    FAIL,
                    f"{what} ({key_id})",
                    _(
                        "run 'liuhen init' on this host: it registers the station and its key "
                        "(for a rotated key see docs/operations.md)"
                    ),
                )
            if row.station_id != sid:
                return Check(
                    name,
                    FAIL,
                    _(
                        "key {key_id} belongs to station {station_id}, but station.id is {sid}"
                    ).format(key_id=key_id, station_id=row.station_id, sid=sid),
                    _(
                        'set station.id = "{station_id}", or give this host a key of its own '
                        "('liuhen init' with a new station.key_file)"
                    ).format(station_id=row.station_id),
                )
            if retired is not None:
                return Check(
                    name,
                    FAIL,
                    _("key {key_id} of station {sid} was retired at {retired}").format(
                        key_id=key_id, sid=sid, retired=show_time(retired, _zone(st))
                    ),
                    _(
                        "point station.key_file at the station's current key "
                        "(docs/operations.md, 'Signing-key rotation')"
                    ),
                )
        return Check(name, OK, _("station {sid}, key {key}…").format(sid=sid, key=key_id[:24]))

    return _guarded(name, check)


def _clock(st: _State) -> Check:
    name = "clock"
    now = datetime.now(UTC)
    if now < EARLIEST_SANE:
        return Check(
            name,
            FAIL,
            _("the system clock reads {when}").format(when=show_time(now, _zone(st))),
            _("set the clock and enable NTP (timedatectl set-ntp true)"),
        )
    if st.catalog is None or not st.catalog_ok or not st.catalog.is_postgres:
        why = (
            _("the catalog is not reachable")
            if st.settings and st.settings.catalog_url.startswith("postgresql")
            else _("a SQLite catalog has no server clock")
        )
        return Check(
            name,
            OK,
            _("{when} (not compared: {why}; keep NTP on)").format(
                when=show_time(now, _zone(st)), why=why
            ),
        )
    cat = st.catalog

    def check() -> Check:
        with cat.session() as s:
            t0 = time.time()
            server = s.execute(text("SELECT clock_timestamp()")).scalar_one()
            t1 = time.time()
        offset = server.timestamp() - (t0 + t1) / 2
        said = (
            _("{seconds:.2f} s behind the catalog server (±{error:.2f} s)")
            if offset > 0
            else _("{seconds:.2f} s ahead of the catalog server (±{error:.2f} s)")
        )
        detail = said.format(seconds=abs(offset), error=(t1 - t0) / 2)
        fix = _("enable NTP on this host and on the database server (timedatectl set-ntp true)")
        if abs(offset) > CLOCK_FAIL_S:
            return Check(name, FAIL, detail, fix)
        if abs(offset) > CLOCK_WARN_S:
            return Check(name, WARN, detail, fix)
        return Check(name, OK, detail)

    return _guarded(name, check)


# -- store ------------------------------------------------------------------------------------


def _store(st: _State) -> list[Check]:
    s = st.settings
    if s is None:
        return [_skip("store", _("settings did not load"))]
    if urlsplit(s.store_url).scheme == "file":
        root = Path(unquote(urlsplit(s.store_url).path))
        if not root.is_dir():
            # LocalStore.check would create it; the doctor looks, it does not build.
            return [
                Check(
                    "store",
                    FAIL,
                    _("store directory {root} does not exist").format(root=root),
                    _("run 'liuhen init' (it creates the store), or fix store.url"),
                )
            ]
    try:
        from storage import open_store

        # Few, quick retries: a doctor should answer in seconds, not wait out an outage.
        opts = replace(
            s.store,
            max_attempts=min(s.store.max_attempts, 2),
            connect_timeout_s=min(s.store.connect_timeout_s, 5.0),
            read_timeout_s=min(s.store.read_timeout_s, 20.0),
        )
        store = open_store(s.store_url, opts)
        st.store = store
        report = store.check()
    except LiuhenError as exc:
        return [Check("store", FAIL, exc.message, exc.hint or _("fix store.url"))]
    except Exception as exc:
        return [
            Check(
                "store",
                FAIL,
                f"store {mask_url(s.store_url)}: {type(exc).__name__}: {exc}",
                _("check store.url, store.endpoint_url and the credentials"),
            )
        ]
    is_s3 = urlsplit(s.store_url).scheme == "s3"
    bucket = urlsplit(s.store_url).netloc
    out: list[Check] = []
    for c in report.checks:
        name = f"store {c.name}"
        if c.ok:
            out.append(_store_ok(name, c.name, c.detail, is_s3, report.object_lock, bucket))
        else:
            out.append(_store_problem(name, c.name, c.detail, s, is_s3, bucket))
    return out


def _store_ok(name: str, what: str, detail: str, is_s3: bool, lock: bool, bucket: str) -> Check:
    if is_s3 and what == "object lock" and not lock:
        return Check(
            name,
            WARN,
            detail,
            _(
                "evidence in bucket {bucket} is protected by the catalog only: use a "
                "bucket created with Object Lock (docs/operations.md, 'The bucket')"
            ).format(bucket=bucket),
        )
    if is_s3 and what == "versioning" and "Enabled" not in detail:
        return Check(
            name,
            WARN,
            f"versioning {detail}",
            _("enable versioning on bucket {bucket} (Object Lock needs it)").format(bucket=bucket),
        )
    return Check(name, OK, known_text(detail))


def _store_problem(
    name: str, what: str, detail: str, s: Settings, is_s3: bool, bucket: str
) -> Check:
    low = detail.lower()
    if what == "round trip" and "delete failed" in low and "access denied" in low:
        # A station's policy may refuse deletes altogether; the probe then stays behind.
        return Check(
            name,
            WARN,
            detail,
            _(
                "allow s3:DeleteObject on {bucket}/<prefix>/liuhen-check/* only, so "
                "probe objects are removed (docs/operations.md, 'Credentials')"
            ).format(bucket=bucket),
        )
    if not is_s3:
        root = urlsplit(s.store_url).path
        fixes = {
            "reachable": _("create {root} or fix store.url").format(root=root),
            "writable": _("make {root} writable by this user").format(root=root),
            "free space": _("free space on the file system of {root}").format(root=root),
        }
        return Check(name, FAIL, detail, fixes.get(what, f"check {root}"))
    if "does not exist" in low:
        fix = _(
            "create bucket {bucket} with versioning and Object Lock "
            "(docs/operations.md, 'The bucket'), or fix store.url"
        ).format(bucket=bucket)
    elif "access denied" in low or "no s3 credentials" in low:
        fix = _(
            "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the "
            "service's environment file) and that their policy allows this on bucket "
            "{bucket} (docs/operations.md, 'Credentials')"
        ).format(bucket=bucket)
    elif "did not answer" in low or "unreachable" in low:
        fix = _(
            "check that the object store at {endpoint} is running and reachable from "
            "this host, and store.endpoint_url"
        ).format(endpoint=s.store.endpoint_url or "AWS")
    else:
        fix = _("check store.url, store.endpoint_url and the bucket's policy")
    return Check(name, FAIL, detail, fix)


# -- media tools, space, journal, dock root ----------------------------------------------------


def _chain_heads(st: _State) -> Check:
    """The catalog against the signed custody chain heads in the journal and the store:
    the check of `custody verify` and `verify --district` (catalog.custody.check_anchors)."""
    name = "custody chain heads"
    if st.settings is None:
        return _skip(name, _("settings did not load"))
    if not st.schema_ok or st.catalog is None:
        return _skip(name, _("the catalog is not reachable or its schema is not current"))
    cat, settings = st.catalog, st.settings

    def check() -> Check:
        from catalog.custody import check_anchors
        from liuhen.anchoring import reachable_anchors

        reached = reachable_anchors(settings, st.store)
        with cat.session() as s:
            problems, last, _verified = check_anchors(s, reached.heads)
        found = [p.describe() for p in problems] + [i.detail for i in reached.issues]
        if found:
            return Check(
                name,
                FAIL,
                "; ".join(found),
                _(
                    "the catalog lost custody events the stations signed for: run 'liuhen "
                    "custody verify', then restore the catalog from a copy that holds them "
                    "(docs/custody.md)"
                ),
            )
        if not last and not reached.unreachable:
            # A new installation: stations sign their head after their first docking.
            return Check(
                name,
                OK,
                _(
                    "no signed chain head yet (a station signs one after each docking; other "
                    "hosts: 'liuhen custody anchor')"
                ),
            )
        anchored = ", ".join(f"{sid} #{n}" for sid, n in sorted(last.items()))
        detail = _("the catalog holds every anchored event (last anchored: {anchored})").format(
            anchored=anchored
        )
        if reached.unreachable:
            return Check(
                name,
                WARN,
                detail + _("; not read: ") + "; ".join(reached.unreachable),
                _("make the store reachable"),
            )
        return Check(name, OK, detail)

    return _guarded(name, check)


def _media_tools(st: _State, role: str) -> list[Check]:
    tools = st.settings.ffmpeg if st.settings else FfmpegSettings()
    # A station only offloads; it can run without ffmpeg (its workers cannot).
    severity = WARN if role == "station" else FAIL
    out = [
        _guarded("ffmpeg", lambda: _tool("ffmpeg", tools.ffmpeg, "ffmpeg.ffmpeg", severity)),
        _guarded("ffprobe", lambda: _tool("ffprobe", tools.ffprobe, "ffmpeg.ffprobe", severity)),
    ]
    ffmpeg_path = shutil.which(tools.ffmpeg)
    if ffmpeg_path is not None:
        out.append(_guarded("ffmpeg encoders", lambda: _encoders(ffmpeg_path, severity)))
    return out


def _tool(name: str, binary: str, key: str, severity: str) -> Check:
    fix = _(
        "install ffmpeg (Debian/Ubuntu: 'apt install ffmpeg'), or set {key} to "
        "the full path of {name}"
    ).format(key=key, name=name)
    path = shutil.which(binary)
    if path is None:
        where = _("not found on PATH") if os.sep not in binary else _("not an executable file")
        return Check(name, severity, f"{binary!r} {where}", fix)
    try:
        proc = subprocess.run(
            [path, "-hide_banner", "-version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name, severity, _("{path} did not run: {exc}").format(path=path, exc=exc), fix)
    first = proc.stdout.decode("utf-8", "replace").strip().splitlines()[:1]
    if proc.returncode != 0 or not first:
        tail = proc.stderr.decode("utf-8", "replace").strip()[-300:]
        return Check(
            name,
            severity,
            _("{path} -version failed ({returncode}): {tail}").format(
                path=path, returncode=proc.returncode, tail=tail
            ),
            fix,
        )
    match = re.search(r"version\s+(\S+)", first[0])
    return Check(name, OK, f"{path}: {match.group(1) if match else first[0]}")


def _encoders(ffmpeg: str, severity: str) -> Check:
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-encoders"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    listed = proc.stdout.decode("utf-8", "replace")
    names = {
        line.split()[1]
        for line in listed.splitlines()
        if len(line.split()) > 1 and re.match(r"^\s*[VAS][.A-Z]{5}\s", line)
    }
    missing = [e for e in ("libx264", "aac") if e not in names]
    if missing:
        return Check(
            "ffmpeg encoders",
            severity,
            _("{ffmpeg} lacks the {join} encoder(s) the access copies and proxies need").format(
                ffmpeg=ffmpeg, join=", ".join(missing)
            ),
            _("install an ffmpeg build with libx264 (Debian's has it)"),
        )
    return Check("ffmpeg encoders", OK, _("libx264 and aac available"))


def _sm3_engine() -> Check:
    """Which SM3 engine hashes, on which instruction set: hashlib's is several times slower."""
    import sm3engine

    info = sm3engine.engine_info()
    if info["engine"] != "sm3engine":
        return Check(
            "sm3 engine",
            WARN,
            _("hashlib (OpenSSL), not 留痕's engine: {why}").format(why=info["why"]),
            _("reinstall with a C compiler and Python's headers: bash scripts/setup.sh"),
        )
    return Check(
        "sm3 engine",
        OK,
        _("sm3engine on {instructions}; SHA-256 on {sha256}").format(
            instructions=info["sm3"], sha256=info["sha256_isa"]
        ),
    )


def _signature_engine() -> Check:
    """Which library verifies custody signatures: libsodium releases the GIL and is about
    twice as fast as OpenSSL here; without it every check is still made, more slowly."""
    from catalog.signing import fast_verify_available, signature_engine

    if not fast_verify_available():
        return Check(
            "signature engine",
            WARN,
            _("OpenSSL only: custody checks of large bags take about twice as long"),
            _("install libsodium (Debian: apt-get install libsodium23; bash scripts/setup.sh)"),
        )
    return Check("signature engine", OK, known_text(signature_engine()))


def _space(st: _State, role: str) -> Check:
    name = "staging space"
    s = st.settings
    if s is None:
        return _skip(name, _("settings did not load"))
    if not s.data_dir.is_dir():
        return _skip(name, _("{data_dir} does not exist").format(data_dir=s.data_dir))

    def check() -> Check:
        dirs = (
            [s.staging_dir]
            if role == "station"
            else ([s.work_dir] if role == "worker" else [s.staging_dir, s.work_dir])
        )
        for d in dirs:
            # Not created by the doctor: the service makes it; its parent must allow that.
            target = d if d.is_dir() else d.parent
            probe = target / f".liuhen-doctor-{uuid.uuid4().hex}"
            try:
                fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, b"x")
                    os.fsync(fd)
                finally:
                    os.close(fd)
                probe.unlink()
            except OSError as exc:
                return Check(
                    name,
                    FAIL,
                    _("cannot write in {target}: {strerror}").format(
                        target=target, strerror=exc.strerror
                    ),
                    _("make {target} writable by the service's user").format(target=target),
                )
        vfs = os.statvfs(s.staging_dir if s.staging_dir.is_dir() else s.data_dir)
        free = vfs.f_bavail * vfs.f_frsize
        detail = _("{gb:.1f} GB free for {folders}").format(
            gb=free / 1e9, folders=", ".join(str(d) for d in dirs)
        )
        fix = _(
            "free space or move the data directory to a larger disk: staging holds a "
            "docked recorder's files until they are stored"
        )
        if free < SPACE_FAIL_BYTES:
            return Check(name, FAIL, detail, fix)
        if free < SPACE_WARN_BYTES:
            return Check(name, WARN, detail, fix)
        return Check(name, OK, detail)

    return _guarded(name, check)


def _journal(st: _State) -> Check:
    name = "station journal"
    s = st.settings
    if s is None:
        return _skip(name, _("settings did not load"))
    path = s.journal_path
    if not path.exists():
        return Check(
            name, OK, _("{path}: none yet (created by the first docking)").format(path=path)
        )

    def check() -> Check:
        try:
            summary = read_summary(path)
        except JournalUnreadable as exc:
            fix = (
                _("check the permissions of {path}").format(path=path)
                if exc.opening
                else _("stop the station and check the disk; restore the journal if need be")
            )
            return Check(name, FAIL, exc.message, fix)
        if summary.damage is not None:
            return Check(
                name,
                FAIL,
                _("{path} is damaged: {damage}").format(path=path, damage=summary.damage),
                _(
                    "stop the station, keep a copy of the journal and the staging folder, "
                    "and restore the journal from backup"
                ),
            )
        open_dockings, staged = summary.unfinished_dockings, summary.staged_files
        detail = _("{path}: {open_dockings} unfinished docking(s), {staged} file(s) staged").format(
            path=path, open_dockings=open_dockings, staged=staged
        )
        if staged:
            return Check(
                name,
                WARN,
                detail + _(" waiting for the store or catalog"),
                _(
                    "they are stored when 'liuhen station watch' runs with the catalog and "
                    "store reachable"
                ),
            )
        return Check(name, OK, detail)

    return _guarded(name, check)


def _dock_root(st: _State) -> Check:
    name = "dock root"
    s = st.settings
    if s is None:
        return _skip(name, _("settings did not load"))
    root = s.ingest.dock_root
    if not root:
        return Check(
            name,
            WARN,
            _("ingest.dock_root is not set"),
            _("set ingest.dock_root (or pass --dock-root to 'liuhen station watch')"),
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        return Check(
            name,
            FAIL,
            _("{path} is not a folder").format(path=path),
            _("create {path} (or mount the dock there), or fix ingest.dock_root").format(path=path),
        )
    if not os.access(path, os.R_OK | os.X_OK):
        return Check(
            name,
            FAIL,
            _("{path} is not readable by this user").format(path=path),
            _("give the service's user read access to {path}").format(path=path),
        )
    return Check(name, OK, str(path))


def _processes(st: _State) -> Check:
    name = "services"
    if st.settings is None or st.catalog is None or not st.schema_ok:
        return _skip(name, _("the catalog is not usable"))
    cat, sid = st.catalog, st.settings.station.id

    def check() -> Check:
        with cat.session() as s:
            rows = list(s.scalars(select(Heartbeat).where(Heartbeat.station_id == sid)))
            total = s.scalar(select(func.count()).select_from(Heartbeat)) or 0
        states = [(r, status_of(r)) for r in rows]
        lost = [r for r, status in states if status == LOST]
        alive = [r for r, status in states if status == "alive"]
        detail = _(
            "station {sid}: {n} running, {n2} lost ({total} process heartbeats in the district)"
        ).format(sid=sid, n=len(alive), n2=len(lost), total=total)
        if lost:
            names = ", ".join(
                _("{role} on {host} (pid {pid})").format(role=r.role, host=r.host, pid=r.pid)
                for r in lost
            )
            return Check(
                name,
                WARN,
                f"{detail}: silent: {names}",
                _(
                    "check the service: 'systemctl status liuhen-station' / "
                    "'liuhen-worker@…' and its journal ('journalctl -u …')"
                ),
            )
        return Check(name, OK, detail)

    return _guarded(name, check)
