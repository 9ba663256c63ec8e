"""Run a command in a real terminal of a given width (tmux) and read the screen back.

The layouts of `station status`, `case list`, `show` and friends are tested the way a
person sees them: at 80 and 120 columns, on a pseudo-terminal, with rich deciding the
width from the terminal itself (no COLUMNS cheat)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence

import pytest


def tmux_or_skip() -> str:
    path = shutil.which("tmux")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is missing (scripts/setup.sh installs it)")
        pytest.skip("tmux is missing")
    return path


def screen(
    argv: Sequence[str],
    *,
    width: int,
    height: int = 200,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> str:
    """What ``argv`` prints on a ``width``-column terminal: the whole pane, history
    included, with trailing blanks trimmed."""
    tmux = tmux_or_skip()
    session = f"lh-{uuid.uuid4().hex[:10]}"
    socket = f"lh-{uuid.uuid4().hex[:10]}"
    done = f"__done_{uuid.uuid4().hex[:8]}__"
    merged = {**os.environ, **(env or {})}
    merged.pop("COLUMNS", None)
    merged.pop("LINES", None)
    merged.pop("TMUX", None)
    merged["TERM"] = "xterm-256color"
    merged["NO_COLOR"] = "1"
    command = " ".join(shlex.quote(a) for a in argv) + f"; echo {done}"
    base = [tmux, "-L", socket, "-f", "/dev/null"]
    subprocess.run(
        [
            *base,
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            str(width),
            "-y",
            str(height),
            "sh",
            "-c",
            command + "; sleep 600",
        ],
        check=True,
        env=merged,
    )
    try:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = subprocess.run(
                [*base, "capture-pane", "-p", "-J", "-S", "-", "-t", session],
                check=True,
                capture_output=True,
                text=True,
                env=merged,
            ).stdout
            if done in text:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"{argv} did not finish in {timeout} s; screen:\n{text}")
        # -J joins wrapped lines; the layout test wants the lines as shown, so capture
        # again without joining once the command is done.
        shown = subprocess.run(
            [*base, "capture-pane", "-p", "-S", "-", "-t", session],
            check=True,
            capture_output=True,
            text=True,
            env=merged,
        ).stdout
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, env=merged)
    lines = [line.rstrip() for line in shown.split(done)[0].splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def assert_whole(text: str, *values: str) -> None:
    """Each value appears on one line of the screen, not cut or folded across two."""
    lines = text.splitlines()
    for value in values:
        if not any(value in line for line in lines):
            raise AssertionError(f"{value!r} is not shown whole on any line of:\n{text}")


def widest_line(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.splitlines()), default=0)
