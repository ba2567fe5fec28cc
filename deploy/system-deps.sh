#!/usr/bin/env bash
# System packages the project's install and tests need, installed when missing (Debian).
# Used by make and by CI on a fresh machine; a no-op where everything is present.
#   system-deps.sh        what installing the Python side needs (make up, make install)
#   system-deps.sh test   plus what the test suite needs (Chromium)
set -euo pipefail
need=()
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need+=(python3-dev)
command -v pg_config >/dev/null || need+=(libpq-dev)   # psycopg2 for Synapse on PostgreSQL
command -v npm >/dev/null || need+=(nodejs npm)   # the demo's stand-in Pro Santé Connect; tests' Element client
if [ "${1:-}" = test ]; then
    [ -x /usr/bin/chromium ] || need+=(chromium)        # the console's browser test
fi
if ((${#need[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "Missing system packages: ${need[*]} (install them with apt-get as root)" >&2
        exit 1
    fi
    apt-get update -qq
    apt-get install -y -qq "${need[@]}"
fi
