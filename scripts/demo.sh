#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run 留痕's main job on the embedded default
# (SQLite catalog + local directory store) in ./demo-data: dock a synthetic recorder,
# show the station status, make derivatives, attach the recordings to a case by rule,
# export the case as a signed BagIt bundle, verify it offline, verify the custody log;
# then start the web application (`liuhen serve`) with a demo account and print its
# address. Safe to run again: each run stops the last run's server and starts afresh in
# ./demo-data. Messages are in Chinese; LIUHEN_LANG=en bash scripts/demo.sh for English.
set -euo pipefail
cd "$(dirname "$0")/.."
# The demo runs on the embedded default: no S3 server, so no Ceph packages to install.
LIUHEN_SETUP_NO_CEPH=1 bash scripts/setup.sh
export LIUHEN_HOME="$PWD/demo-data"
port="${LIUHEN_DEMO_PORT:-8000}"
station_port="${LIUHEN_DEMO_STATION_PORT:-$((port + 1))}" # the station's own screen, loopback
liuhen=.venv/bin/liuhen
if [ -f "$LIUHEN_HOME/serve.pid" ]; then
  kill "$(cat "$LIUHEN_HOME/serve.pid")" 2>/dev/null || true
fi
rm -rf "$LIUHEN_HOME"
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
# The web application on the same data, with a demo account (the CLI steps above ran
# before any account existed; from now on commands need `liuhen login`).
password=$(.venv/bin/python scripts/demo/web_account.py)
nohup $liuhen serve --host 127.0.0.1 --port "$port" --station-port "$station_port" >"$LIUHEN_HOME/serve.log" 2>&1 &
echo $! >"$LIUHEN_HOME/serve.pid"
for _ in $(seq 1 60); do
  if .venv/bin/python -c "import urllib.request, sys
urllib.request.urlopen('http://127.0.0.1:$port/login', timeout=1)" 2>/dev/null; then
    break
  fi
  sleep 0.5
done
echo
echo "网页 / web:  http://127.0.0.1:$port/    (采集站屏幕 / station screen: http://127.0.0.1:$station_port/station)"
echo "演示账户 / demo account:  demo  密码 / password: $password"
echo "停止 / stop:  kill \$(cat $LIUHEN_HOME/serve.pid)"
