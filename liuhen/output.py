"""How commands print: rich text for people, JSON for programs, errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


def mark(ok: bool) -> str:
    return "[green]✓[/green]" if ok else "[red]✗[/red]"
