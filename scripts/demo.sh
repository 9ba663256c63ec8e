#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run 留痕's main job on the embedded default
# (SQLite catalog + local directory store) in ./demo-data: dock a synthetic recorder,
# show the station status, make derivatives, attach the recordings to a case by rule,
# export the case as a signed BagIt bundle, verify it offline, verify the custody log.
# Safe to run again: imports are idempotent and every export gets a new folder.
set -euo pipefail
cd "$(dirname "$0")/.."
# The demo runs on the embedded default: no S3 server, so no Ceph packages to install.
LIUHEN_SETUP_NO_CEPH=1 bash scripts/setup.sh
export LIUHEN_HOME="${LIUHEN_HOME:-$PWD/demo-data}"
liuhen=.venv/bin/liuhen
$liuhen init
$liuhen demo
$liuhen station status
$liuhen device import scripts/demo/assignments.csv
$liuhen worker --drain 2>/dev/null
$liuhen case import scripts/demo/cases.csv
$liuhen case show "沪徐市监罚〔2026〕123号"
bundle="$LIUHEN_HOME/exports/case-123-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$LIUHEN_HOME/exports"
$liuhen export --case "沪徐市监罚〔2026〕123号" --with-access --out "$bundle"
$liuhen verify "$bundle"
(cd "$bundle" && sha256sum --quiet -c manifest-sha256.txt && echo "sha256sum -c: OK")
$liuhen custody verify
