from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings, settings_as_dict


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
        ("[store]\nmax_attempts = 0\n", ["'store.max_attempts'", "greater than 0"]),
        ('[station]\nid = "../evil"\n', ["'station.id'"]),
        ('[digests]\nalgorithms = ["md5", "sha256"]\n', ["'digests.algorithms'", "md5"]),
        ('[digests]\nalgorithms = ["sm3"]\n', ["'digests.algorithms'", "sha256"]),
        ('[store]\nurl = "ftp://x/y"\n', ["'store.url'"]),
        ('[catalog]\nurl = "mysql://u:secret@h/d"\n', ["'catalog.url'", "***"]),
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
