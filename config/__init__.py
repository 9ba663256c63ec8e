"""Settings model, loading (TOML file then LIUHEN_* environment), and the error root."""

from config.errors import ConfigError, LiuhenError, UnavailableError
from config.loader import load_settings, mask_url, settings_as_dict
from config.settings import Settings

# Loaded with the package, not at the first error: LiuhenError reads it from inside (an
# import there avoids a cycle), and an error raised when the process has no file
# descriptor left (EMFILE) must still be made, not fail opening message.py.
import config.message  # noqa: F401  isort: skip

__all__ = [
    "ConfigError",
    "LiuhenError",
    "Settings",
    "UnavailableError",
    "load_settings",
    "mask_url",
    "settings_as_dict",
]
