#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run 留痕's main job on the embedded default
# (SQLite catalog + local directory store) in ./demo-data: dock a synthetic recorder,
# show the station status, make derivatives, verify the custody log.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LIUHEN_HOME="${LIUHEN_HOME:-$PWD/demo-data}"
.venv/bin/liuhen init
.venv/bin/liuhen demo
.venv/bin/liuhen station status
.venv/bin/liuhen worker --drain 2>/dev/null
.venv/bin/liuhen custody verify
