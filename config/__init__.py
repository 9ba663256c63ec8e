"""Settings model, loading (TOML file then LIUHEN_* environment), and the error root."""

from config.errors import ConfigError, LiuhenError, UnavailableError
from config.loader import load_settings, mask_url, settings_as_dict
from config.settings import Settings

__all__ = [
    "ConfigError",
    "LiuhenError",
    "Settings",
    "UnavailableError",
    "load_settings",
    "mask_url",
    "settings_as_dict",
]
