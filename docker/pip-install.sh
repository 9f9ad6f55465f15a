#!/bin/sh
# pip install into /opt/venv, from a wheelhouse when the build brought one.
# Usage: pip-install.sh WHEEL_DIR pip-install-args...
# With wheels in WHEEL_DIR (made on the host by `python -m stack.images`, for machines whose
# containers cannot reach PyPI) nothing is downloaded; with none, pip uses PyPI as usual.
set -eu
wheels="$1"; shift
if ls "$wheels"/*.whl >/dev/null 2>&1; then
  set -- --no-index --find-links "$wheels" "$@"
fi
exec /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "$@"
