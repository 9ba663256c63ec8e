"""Load settings: defaults, then the TOML file, then ``LIUHEN_*`` environment variables.

Validation happens once, here; every rejection names the file (or variable), the key and
the reason.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from config import env
from config.errors import ConfigError
from config.i18n import N_, _
from config.settings import (
    AUDIT_MIN_KEEP_DAYS,
    DIGEST_ALGORITHMS,
    RANGE,
    SECTIONS,
    X264_PRESETS,
    Settings,
    zone_of,
)

STATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def default_data_dir(environ: Mapping[str, str]) -> Path:
    if environ.get(env.HOME):
        return Path(environ[env.HOME]).expanduser()
    xdg = environ.get(env.XDG_DATA_HOME)
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "liuhen"


def resolve_paths(
    data_dir: str | Path | None,
    config_file: str | Path | None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Path, Path, bool]:
    """(data dir, config file, whether the config file was named explicitly)."""
    environ = os.environ if environ is None else environ
    ddir = Path(data_dir).expanduser() if data_dir else default_data_dir(environ)
    if config_file:
        return ddir, Path(config_file).expanduser(), True
    if environ.get(env.CONFIG):
        return ddir, Path(environ[env.CONFIG]).expanduser(), True
    return ddir, ddir / "liuhen.toml", False


def load_settings(
    data_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    environ = os.environ if environ is None else environ
    ddir, cfg_path, explicit = resolve_paths(data_dir, config_file, environ)
    raw: dict[str, Any] = {}
    source: Path | None = None
    if cfg_path.exists():
        source = cfg_path
        try:
            raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        # ValueError: also what tomllib lets through for an integer of thousands of digits;
        # RecursionError: arrays nested deeper than its parser goes.
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ConfigError(
                _("{path}: not valid TOML: {error}").format(path=cfg_path, error=exc),
                hint=_("fix the file or run 'liuhen init'"),
            ) from exc
        except OSError as exc:
            raise ConfigError(
                _("{path}: cannot read: {error}").format(path=cfg_path, error=exc.strerror)
            ) from exc
    elif explicit:
        raise ConfigError(
            _("{path}: settings file not found").format(path=cfg_path),
            hint=_("check --config / LIUHEN_CONFIG, or run 'liuhen init' to create one"),
        )

    where = str(cfg_path)
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(
            _("{where}: unknown section [{name}]").format(where=where, name=name),
            hint=_("known sections: {names}").format(names=", ".join(SECTIONS)),
        )
    sections: dict[str, Any] = {}
    policy_env: list[tuple[str, str, Any, Any]] = []
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(_("{where}: [{name}] must be a table").format(where=where, name=name))
        sections[name] = _build_section(name, cls, table, where, environ, policy_env)
    settings = Settings(data_dir=ddir, source=source, **sections)
    _validate(settings, where, environ)
    for override in policy_env:  # after _validate: its own messages come first
        _check_stricter(*override)
    return settings


def _build_section(
    section: str,
    cls: type,
    table: dict[str, Any],
    where: str,
    environ: Mapping[str, str],
    policy_env: list[tuple[str, str, Any, Any]],
) -> Any:
    """The section from the file's table and the environment; an environment value of the
    access policy is appended to ``policy_env`` (key, variable, value, file's value)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in table:
        if key not in names:
            raise ConfigError(
                _("{where}: unknown key '{key}'").format(where=where, key=f"{section}.{key}"),
                hint=_("known keys in [{section}]: {names}").format(
                    section=section, names=", ".join(sorted(names))
                ),
            )
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        var = env.field_variable(section, f.name)
        if f.name in table:
            label = _("{where}: '{key}'").format(where=where, key=f"{section}.{f.name}")
            values[f.name] = _in_range(label, _from_toml(label, table[f.name], typ), f)
        if var in environ:
            label = _("environment variable {var} ('{key}')").format(
                var=var, key=f"{section}.{f.name}"
            )
            value = _in_range(label, _from_env(var, environ[var], typ), f)
            if section == "access" and f.name in _POLICY_HIGHER_IS_STRICTER:
                policy_env.append((f.name, var, value, values.get(f.name, f.default)))
            values[f.name] = value
    return cls(**values)


# The access policy (docs/security.md): whoever runs a command sets its environment, so
# an environment variable may only make these stricter than the settings file (or the
# default). Each key says whether a higher value is stricter; for password_max_age_days
# lower is stricter, but 0 (no expiry) is the weakest of all.
_POLICY_HIGHER_IS_STRICTER: Mapping[str, bool] = {
    "password_min_length": True,
    "password_classes": True,
    "password_history": True,
    "password_max_age_days": False,
    "lockout_failures": False,
    "lockout_minutes": True,
    "session_idle_minutes": False,
    "session_absolute_hours": False,
    "token_max_days": False,
}


def _weaker(key: str, value: int, base: int) -> bool:
    if key == "password_max_age_days":
        return (value == 0 and base != 0) or (base != 0 and value > base)
    return value < base if _POLICY_HIGHER_IS_STRICTER[key] else value > base


def _check_stricter(key: str, var: str, value: Any, base: Any) -> None:
    """Refuse an environment variable that weakens the access policy."""
    if _weaker(key, value, base):
        raise ConfigError(
            _(
                "environment variable {var} ({value}) would weaken the access policy "
                "'{key}' ({base} in the settings file or by default)"
            ).format(var=var, value=value, key=f"access.{key}", base=base),
            hint=_(
                "an environment variable may only make the access policy stricter; "
                "change the settings file instead, or unset {var}"
            ).format(var=var),
        )


def _in_range(label: str, value: Any, f: dataclasses.Field[Any]) -> Any:
    """A numeric value inside its field's declared range (finite, for floats)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(
            _("{label} must be a finite number, got {value}").format(label=label, value=value)
        )
    bounds = f.metadata.get(RANGE)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        low, high = bounds
        raise ConfigError(
            _("{label} must be between {low} and {high}, got {value}").format(
                label=label, low=low, high=high, value=_shown(value)
            )
        )
    return value


def _shown(value: float) -> str:
    """A number as the user can read it: a 300-digit integer is cut, not printed whole."""
    text = str(value)
    if len(text) <= 24:
        return text
    return _("{start}… ({count} digits)").format(start=text[:12], count=len(text))


def _from_toml(label: str, value: Any, typ: Any) -> Any:
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and isinstance(value, int) and abs(value) > 2**53:
            # float() of a huge integer overflows (or rounds): no setting is that big.
            raise ConfigError(
                _("{label} must be a number of at most 16 digits, got {value}").format(
                    label=label, value=_shown(value)
                )
            )
        value = float(value) if ok else value
    elif typ is str:
        ok = isinstance(value, str)
    elif typing.get_origin(typ) is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:  # pragma: no cover - a settings field of a type this loader does not know
        raise TypeError(typ)
    if not ok:
        raise ConfigError(
            _("{label} must be {kind}, got {value}").format(
                label=label, kind=_type_name(typ), value=repr(value)
            )
        )
    return value


def _from_env(var: str, text: str, typ: Any) -> Any:
    try:
        if typ is bool:
            low = text.strip().lower()
            if low not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(text)
            return low in {"1", "true", "yes", "on"}
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
        if typ is str:
            return text
        if typing.get_origin(typ) is tuple:
            return tuple(p.strip() for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise ConfigError(
            _("environment variable {var} must be {kind}, got {value}").format(
                var=var, kind=_type_name(typ), value=repr(text)
            )
        ) from exc
    raise TypeError(typ)  # pragma: no cover


def _type_name(typ: Any) -> str:
    if typing.get_origin(typ) is tuple:
        return _("a list of strings")
    names = {
        bool: N_("true or false"),
        int: N_("a whole number"),
        float: N_("a number"),
        str: N_("a string"),
    }
    return _(names[typ])


def _validate(s: Settings, where: str, environ: Mapping[str, str]) -> None:
    def bad(key: str, reason: str, hint: str | None = None) -> ConfigError:
        # Blame the variable when the value came from the environment, not the file.
        var = env.field_variable(*key.split(".", 1))
        origin = _("environment variable {var}").format(var=var) if var in environ else where
        return ConfigError(
            _("{origin}: '{key}' {reason}").format(origin=origin, key=key, reason=reason),
            hint=hint,
        )

    if not STATION_ID.match(s.station.id):
        raise bad(
            "station.id",
            _("must be 1-64 letters, digits, '.', '_' or '-', got {value}").format(
                value=repr(s.station.id)
            ),
        )
    try:
        zone_of(s.station.time_zone)
    except ValueError as exc:
        raise bad("station.time_zone", str(exc), hint=_("e.g. Asia/Shanghai or UTC")) from exc
    algs = s.digests.algorithms
    if "sha256" not in algs:
        raise bad("digests.algorithms", _("must include sha256 (it is the object key)"))
    for alg in algs:
        if alg not in DIGEST_ALGORITHMS:
            raise bad(
                "digests.algorithms",
                _("has unknown algorithm {name}").format(name=repr(alg)),
                hint=_("choose from {names}").format(names=", ".join(DIGEST_ALGORITHMS)),
            )
    scheme = urlsplit(s.store_url).scheme
    if scheme not in {"file", "s3"}:
        raise bad(
            "store.url",
            _("must be file:///path or s3://bucket/prefix, got {value}").format(
                value=repr(s.store_url)
            ),
        )
    if not s.catalog_url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise bad(
            "catalog.url",
            _("must be a sqlite:/// or postgresql+psycopg:// URL, got {value}").format(
                value=repr(mask_url(s.catalog_url))
            ),
        )
    if s.store.addressing_style not in {"path", "virtual", "auto"}:
        raise bad("store.addressing_style", _("must be path, virtual or auto"))
    if s.store.object_lock_mode not in {"COMPLIANCE", "GOVERNANCE"}:
        raise bad("store.object_lock_mode", _("must be COMPLIANCE or GOVERNANCE"))
    for key, pattern in [
        *(("ingest.filename_patterns", p) for p in s.ingest.filename_patterns),
        ("ingest.important_marker", s.ingest.important_marker),
    ]:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise bad(
                key,
                _("has an invalid pattern {pattern}: {error}").format(
                    pattern=repr(pattern), error=exc
                ),
            ) from exc
    if s.ingest.observer not in {"auto", "poll", "native"}:
        raise bad("ingest.observer", _("must be auto, poll or native"))
    # Media settings are checked here too, not by ffmpeg in the worker once per recording.
    if s.media.preset not in X264_PRESETS:
        raise bad(
            "media.preset",
            _("must be an x264 preset ({names}), got {value}").format(
                names=", ".join(X264_PRESETS), value=repr(s.media.preset)
            ),
        )
    if s.media.proxy_max_height % 2:
        raise bad(
            "media.proxy_max_height",
            _("must be even (x264 encodes 4:2:0 video in pairs of lines), got {value}").format(
                value=s.media.proxy_max_height
            ),
        )
    if s.compliance.rule not in {"each", "any"}:
        raise bad("compliance.rule", _("must be each (every officer records) or any"))
    if s.access.session_idle_minutes > s.access.session_absolute_hours * 60:
        raise bad(
            "access.session_idle_minutes",
            _(
                "({idle}) is longer than the absolute session end "
                "(access.session_absolute_hours = {hours})"
            ).format(idle=s.access.session_idle_minutes, hours=s.access.session_absolute_hours),
        )
    if s.audit.keep_days < AUDIT_MIN_KEEP_DAYS:
        raise bad(
            "audit.keep_days",
            _(
                "must be at least {floor} days (audit records are kept at least six "
                "months: GB/T 22239-2019 level 3), got {days}"
            ).format(floor=AUDIT_MIN_KEEP_DAYS, days=s.audit.keep_days),
            hint=_("set keep_days = {floor} or more in [audit]").format(floor=AUDIT_MIN_KEEP_DAYS),
        )
    # Numeric ranges are checked as each value is read (config.settings.bounded).


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def settings_as_dict(settings: Settings) -> dict[str, Any]:
    """The effective settings with secrets masked, for `config show`."""
    out: dict[str, Any] = {
        "data_dir": str(settings.data_dir),
        "source": str(settings.source) if settings.source else None,
    }
    for name in SECTIONS:
        section = dataclasses.asdict(getattr(settings, name))
        for key, value in section.items():
            if isinstance(value, tuple):
                section[key] = list(value)
        out[name] = section
    out["catalog"]["url"] = mask_url(settings.catalog_url)
    out["store"]["url"] = mask_url(settings.store_url)
    out["station"]["key_file"] = str(settings.key_file)
    return out
