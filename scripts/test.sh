#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint, type-check and run the whole test suite.
# Needs the PostgreSQL at 127.0.0.1:5432 (or LIUHEN_TEST_PG_URL); starts its own S3
# server process unless LIUHEN_TEST_S3_URL names one. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff" && .venv/bin/ruff check .
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/python -m pytest "$@"
