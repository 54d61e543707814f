#!/usr/bin/env bash
# Creates .venv (if missing) and installs orchestrate with its development tools.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
# Headless Chromium and its driver from Debian, for the dashboard's browser tests (Selenium
# is given both paths: nothing is downloaded at test time). Only when missing.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
        if ! apt-cache show chromium-driver >/dev/null 2>&1; then
            $SUDO apt-get update -q
        fi
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium chromium-driver
    else
        echo "setup: no apt-get here; install Chromium and chromedriver for the browser tests" >&2
    fi
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.orchestrate-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements-dev.txt
    touch "$stamp"
fi

# The fault tests (scripts/fault-tests.sh) start servers of their own: redis-server, PostgreSQL's
# initdb/pg_ctl, and openssl for a TLS Redis. Installed only when missing (and only as root with
# apt-get); without them those tests skip, saying what is missing.
missing=()
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
