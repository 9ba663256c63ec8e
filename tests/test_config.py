from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from config import ConfigError, load_settings, settings_as_dict
from config.settings import RANGE, SECTIONS
from tests.cli_helpers import run_cli


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_embedded_default(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert s.source is None
    assert s.catalog_url == f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    assert s.store_url == (tmp_path / "objects").as_uri()
    assert s.key_file == tmp_path / "keys" / "station.pem"
    assert s.digests.algorithms == ("sha256", "sm3")


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert load_settings().data_dir == tmp_path / "xdg" / "liuhen"
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "home"))
    assert load_settings().data_dir == tmp_path / "home"
    assert load_settings(data_dir=tmp_path / "flag").data_dir == tmp_path / "flag"


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / "liuhen.toml",
        '[station]\nid = "xh-07"\n[store]\nmax_attempts = 3\n[digests]\nalgorithms = ["sha256"]\n',
    )
    s = load_settings(data_dir=tmp_path)
    assert s.source == tmp_path / "liuhen.toml"
    assert (s.station.id, s.store.max_attempts, s.digests.algorithms) == ("xh-07", 3, ("sha256",))
    monkeypatch.setenv("LIUHEN_STORE_MAX_ATTEMPTS", "11")
    monkeypatch.setenv("LIUHEN_DIGESTS_ALGORITHMS", "sha256, sm3")
    s = load_settings(data_dir=tmp_path)
    assert s.store.max_attempts == 11
    assert s.digests.algorithms == ("sha256", "sm3")


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "elsewhere.toml", '[station]\nid = "from-env"\n')
    monkeypatch.setenv("LIUHEN_CONFIG", str(cfg))
    assert load_settings(data_dir=tmp_path / "d").station.id == "from-env"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[store\nurl=1", ["not valid TOML"]),
        ("[nonsense]\na = 1\n", ["unknown section [nonsense]"]),
        ('[store]\nurll = "x"\n', ["unknown key 'store.urll'"]),
        ('[store]\nmax_attempts = "many"\n', ["'store.max_attempts'", "whole number"]),
        ("[store]\nmax_attempts = 0\n", ["'store.max_attempts'", "between 1 and 100"]),
        ('[station]\nid = "../evil"\n', ["'station.id'"]),
        ('[digests]\nalgorithms = ["md5", "sha256"]\n', ["'digests.algorithms'", "md5"]),
        ('[digests]\nalgorithms = ["sm3"]\n', ["'digests.algorithms'", "sha256"]),
        ('[store]\nurl = "ftp://x/y"\n', ["'store.url'"]),
        ('[catalog]\nurl = "mysql://u:secret@h/d"\n', ["'catalog.url'", "***"]),
        ('[media]\npreset = "bogus"\n', ["'media.preset'", "'bogus'", "ultrafast", "placebo"]),
        ("[media]\nproxy_max_height = 721\n", ["'media.proxy_max_height'", "even", "721"]),
        ("[media]\nproxy_crf = 52\n", ["'media.proxy_crf'", "between 0 and 51"]),
        ("[media]\naccess_crf = -1\n", ["'media.access_crf'", "between 0 and 51"]),
    ],
)
def test_bad_file_names_file_key_and_reason(tmp_path: Path, text: str, words: list[str]) -> None:
    cfg = write(tmp_path / "liuhen.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path)
    message = str(info.value)
    assert str(cfg) in message
    for word in words:
        assert word in message
    assert "secret" not in message


def test_bad_environment_value_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIUHEN_CATALOG_BUSY_TIMEOUT_MS", "soon")
    with pytest.raises(ConfigError, match="LIUHEN_CATALOG_BUSY_TIMEOUT_MS"):
        load_settings(data_dir=tmp_path)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(data_dir=tmp_path, config_file=tmp_path / "nope.toml")


def test_show_masks_secrets(tmp_path: Path) -> None:
    write(
        tmp_path / "liuhen.toml",
        '[catalog]\nurl = "postgresql+psycopg://liuhen:hunter2@db/liuhen"\n',
    )
    shown = settings_as_dict(load_settings(data_dir=tmp_path))
    assert shown["catalog"]["url"] == "postgresql+psycopg://liuhen:***@db/liuhen"
    assert "hunter2" not in repr(shown)


# -- numbers that would pass as numbers and crash later ----------------------------------------

NONSENSE_NUMBERS = [
    ("[station]\nheartbeat_s = nan\n", "'station.heartbeat_s'", "finite"),
    ("[ingest]\npoll_interval_s = inf\n", "'ingest.poll_interval_s'", "finite"),
    ("[media]\nlease_s = -inf\n", "'media.lease_s'", "finite"),
    ("[media]\ntime_threshold_s = 1e300\n", "'media.time_threshold_s'", "between"),
    ("[store]\nread_timeout_s = 1e300\n", "'store.read_timeout_s'", "between"),
    (
        "[retention]\npermanent_years = 99999999999999999999\n",
        "'retention.permanent_years'",
        "between 1 and 1000",
    ),
    ("[store]\nobject_lock_days = 10000000000\n", "'store.object_lock_days'", "between"),
    ("[retention]\nattach_margin_s = -5\n", "'retention.attach_margin_s'", "between"),
    ("[media]\nproxy_crf = 99\n", "'media.proxy_crf'", "between 0 and 51"),
    ("[ingest]\nchunk_mb = " + "9" * 5000 + "\n", "", "not valid TOML"),
    ("[ingest]\nchunk_mb = " + "[" * 100_000 + "\n", "", "not valid TOML"),  # RecursionError
    ("[station]\nheartbeat_s = " + "9" * 400 + "\n", "'station.heartbeat_s'", "at most"),
]


@pytest.mark.parametrize(("text", "key", "reason"), NONSENSE_NUMBERS)
def test_nan_infinity_and_huge_numbers_are_refused_at_load_naming_file_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    key: str,
    reason: str,
) -> None:
    cfg = write(tmp_path / "liuhen.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path)
    assert str(cfg) in str(info.value) and key in str(info.value) and reason in str(info.value)
    # What the user sees: a configuration error (78) naming the key, no traceback.
    result = run_cli(capsys, "--data-dir", str(tmp_path), "config", "show")
    assert result.code == 78, result.out + result.err
    assert key in result.err and "Traceback" not in result.err
    assert len(result.err) < 2000  # a 5000-digit number is not echoed back whole


@pytest.mark.parametrize(
    ("var", "value", "reason"),
    [
        ("LIUHEN_STATION_HEARTBEAT_S", "nan", "finite"),
        ("LIUHEN_STORE_CONNECT_TIMEOUT_S", "1e400", "finite"),  # float() gives inf
        ("LIUHEN_INGEST_RETRY_MAX_S", "1e300", "between"),
        ("LIUHEN_RETENTION_UNATTACHED_DAYS", "99999999999999999999", "between"),
        ("LIUHEN_STATION_METRICS_PORT", "70000", "between 0 and 65535"),
        ("LIUHEN_STATION_ID", "../evil", "'station.id'"),
        ("LIUHEN_STORE_URL", "ftp://x/y", "'store.url'"),
    ],
)
def test_bad_environment_value_is_blamed_on_the_variable_not_the_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    var: str,
    value: str,
    reason: str,
) -> None:
    cfg = write(tmp_path / "liuhen.toml", '[station]\nid = "xh-07"\n')
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path)
    message = str(info.value)
    assert var in message and reason in message
    assert str(cfg) not in message


def test_every_numeric_setting_has_a_range_its_default_is_in() -> None:
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] not in (int, float):
                continue
            low, high = f.metadata.get(RANGE, (None, None))
            assert low is not None, f"{section}.{f.name} declares no range"
            assert low <= f.default <= high, f"{section}.{f.name}"


def test_values_at_the_ends_of_a_range_are_taken(tmp_path: Path) -> None:
    write(
        tmp_path / "liuhen.toml",
        "[station]\nmetrics_port = 65535\n[store]\nmultipart_chunk_mb = 5\n"
        "[ingest]\nstable_s = 0\n",
    )
    s = load_settings(data_dir=tmp_path)
    assert (s.station.metrics_port, s.store.multipart_chunk_mb, s.ingest.stable_s) == (65535, 5, 0)


def test_a_bad_media_setting_stops_the_worker_at_start_not_once_per_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "liuhen.toml", '[media]\npreset = "bogus"\n')
    result = run_cli(capsys, "--data-dir", str(tmp_path), "worker", "--drain")
    assert result.code == 78, result.out + result.err
    assert "'media.preset'" in result.err and "veryfast" in result.err
    assert "Traceback" not in result.err
    # From the environment, the variable is blamed; every x264 preset is taken.
    monkeypatch.setenv("LIUHEN_MEDIA_PRESET", "fastest")
    with pytest.raises(ConfigError, match=r"LIUHEN_MEDIA_PRESET.*'fastest'"):
        load_settings(data_dir=tmp_path)
    for preset in ("ultrafast", "medium", "placebo"):
        monkeypatch.setenv("LIUHEN_MEDIA_PRESET", preset)
        assert load_settings(data_dir=tmp_path).media.preset == preset
