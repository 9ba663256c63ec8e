#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint, check formatting (ruff format), type-check and
# run the whole test suite.
# Needs the PostgreSQL at 127.0.0.1:5432 (or LIUHEN_TEST_PG_URL); the S3 tests start a
# throwaway Ceph RGW of their own (tests/fixtures/rgw.py) unless LIUHEN_TEST_S3_URL names
# a server (LIUHEN_TEST_S3_SERVER=moto: moto's server). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff" && .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy" && .venv/bin/mypy
# Two test processes by default (pytest-xdist); LIUHEN_TEST_WORKERS sets how many
# (0: one process, as for a debugger). Every test has its own data directory, schema,
# bucket and ports; each process starts its own Ceph gateway.
echo "== pytest" && .venv/bin/python -m pytest -n "${LIUHEN_TEST_WORKERS:-2}" "$@"
