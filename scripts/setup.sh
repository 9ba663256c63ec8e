#!/usr/bin/env bash
# Set up a development/run environment on a fresh Debian-like machine:
# ffmpeg from Debian's packages when missing, Ceph's monitor, OSD and RADOS Gateway
# for the S3 tests when missing (the tests start a throwaway cluster of their own;
# LIUHEN_SETUP_NO_CEPH=1 skips them, e.g. on a station), a virtual environment in
# .venv, and 留痕 with its test extras installed into it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "setup: Python 3.11 or newer is required (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""
apt_install() { # PACKAGE... from Debian's packages, without recommended extras
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  echo "setup: installing ffmpeg from Debian's packages" >&2
  apt_install ffmpeg
fi

# The self-inspection report's PDF needs a CJK TrueType font; its test renders the PDF
# with poppler's pdftoppm and reads it back with pdftotext.
if [ ! -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || ! command -v pdftoppm >/dev/null 2>&1
then
  echo "setup: installing fonts-wqy-zenhei and poppler-utils from Debian's packages" >&2
  apt_install fonts-wqy-zenhei poppler-utils
fi

# The layout tests run commands in a real terminal of 80 and 120 columns (tmux).
if ! command -v tmux >/dev/null 2>&1; then
  echo "setup: installing tmux from Debian's packages (terminal layout tests)" >&2
  apt_install tmux
fi

# The HTTP API's test behind a reverse proxy (X-Accel-Redirect) runs a real nginx.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "setup: installing nginx from Debian's packages (the API behind a reverse proxy)" >&2
  apt_install nginx
fi

# The web pages' end-to-end tests drive Debian's Chromium with Playwright (pointed at
# /usr/bin/chromium; Playwright never downloads a browser of its own).
if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing chromium from Debian's packages (web page tests)" >&2
  apt_install chromium
fi

# The accessibility test (tests/test_web_a11y.py) runs axe-core in the pages; it comes
# from the npm registry into .cache/axe, never into the repository. Without npm the
# test skips (fails under CI=true).
if command -v npm >/dev/null 2>&1; then
  if [ ! -f .cache/axe/node_modules/axe-core/axe.min.js ]; then
    echo "setup: installing axe-core from the npm registry into .cache/axe" >&2
    npm install --silent --no-audit --no-fund --prefix .cache/axe axe-core@4 >/dev/null ||
      echo "setup: axe-core not installed; the accessibility test will skip" >&2
  fi
else
  echo "setup: npm is missing; the accessibility test (axe-core) will skip" >&2
fi

ceph_missing=""
for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool; do
  command -v "$tool" >/dev/null 2>&1 || ceph_missing=1
done
if [ -n "$ceph_missing" ] && [ "${LIUHEN_SETUP_NO_CEPH:-}" != 1 ]; then
  echo "setup: installing Ceph (monitor, OSD, RADOS Gateway) from Debian's packages" \
       "for the S3 tests" >&2
  apt_install ceph-mon ceph-osd radosgw ceph-common
fi

# Custody signatures are verified by libsodium when it is there (about 3 × OpenSSL's
# speed here, and its calls leave the GIL to other threads); without it, OpenSSL alone.
if ! ldconfig -p 2>/dev/null | grep -q 'libsodium\.so'; then
  echo "setup: installing libsodium from Debian's packages (custody signature checks)" >&2
  apt_install libsodium23 || echo "setup: libsodium not installed; OpenSSL verifies" >&2
fi

# The SM3 engine (sm3engine/_sm3engine.c) is built by pip with the system's C compiler
# against Python's headers; without them 留痕 still installs but hashes SM3 with hashlib.
if ! command -v cc >/dev/null 2>&1 ||
   ! "$PY" -c 'import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)'
then
  echo "setup: installing a C compiler and Python's headers (build-essential, python3-dev)" >&2
  apt_install build-essential python3-dev
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip's own chatter goes to a log; it is shown only when the install fails.
log=.venv/install.log
if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip &&
       .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'; } >"$log" 2>&1
then
  cat "$log" >&2
  echo "setup: installing the Python packages failed (log above, also in $log)" >&2
  exit 1
fi
if ! .venv/bin/python -W error -c 'import sm3engine' 2>/dev/null; then
  echo "setup: the SM3 engine did not build; SM3 falls back to hashlib (slower)." \
       "See $log and 'liuhen doctor'" >&2
fi
# Messages in Chinese: compile the catalog now (else the first command compiles it).
.venv/bin/python scripts/i18n.py compile
echo "setup: ready (.venv/bin/liuhen)" >&2
