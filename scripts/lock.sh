#!/usr/bin/env bash
# `make lock`: resolve psrlm's dependencies afresh (every extra), run the fast test suite against them, and only if
# it passes write requirements.lock, then say what changed against the previous lock.
#
#   make lock                 # resolve, test (about 10 min on 2 cores), write the lock, print the changes
#   LOCK_TEST=0 make lock     # resolve and write without testing (say so in the commit message)
#
# The lock is what `make test`, `make demo` and CI install (pip -c requirements.lock): every machine tests the stack
# the suite last passed with. `pip install psrlm` users get pyproject.toml's lower bounds instead.
# Resolved on CPython 3.11 (what the machines of this project run); torch is pinned to its CPU build's version.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LOCK=requirements.lock
OUT=${LOCK_OUT:-$LOCK}  # where the new lock goes (the smoke test writes a scratch copy; changes are against $LOCK)
VENV=${LOCK_VENV:-.lock-venv}
EXTRAS=$(sed -n 's/^\([a-z]*\) = \[.*$/\1/p' <(sed -n '/^\[project.optional-dependencies\]/,/^\[/p' pyproject.toml) | paste -sd, -)

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip setuptools
"$VENV/bin/pip" install -q torch==2.13.0  # the CPU build on disk; first, so no extra pulls a CUDA build
# deepspeed (the scale extra) is an sdist: DS_BUILD_OPS=0 builds no CUDA/C++ ops, pure Python
DS_BUILD_OPS=0 "$VENV/bin/pip" install -q -e ".[$EXTRAS]"

new=$(mktemp)
{
  echo "# requirements.lock: the exact versions \`make test\` last passed with (CPython $("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])'), $(date -u +%Y-%m-%d))."
  echo "# Written by \`make lock\` (scripts/lock.sh); installed as pip constraints by the Makefile and CI."
  echo "# extras: $EXTRAS"
  # torch's local label (+cpu) is dropped: ==2.13.0 matches the CPU build on disk here and a CUDA build elsewhere
  "$VENV/bin/pip" freeze --all --exclude-editable | sed -e 's/^torch==\([0-9.]*\)+.*/torch==\1/' | LC_ALL=C sort -f
} > "$new"

if [ "${LOCK_TEST:-1}" != 0 ]; then
  echo "lock: running the fast test suite against the new resolution ($VENV)"
  if ! "$VENV/bin/python" -m pytest -q -p no:cacheprovider; then
    echo "lock: the suite FAILED against these versions; $OUT is unchanged. The resolution that failed:" >&2
    "$VENV/bin/python" scripts/lock_diff.py "$LOCK" "$new" >&2 || true
    rm -f "$new"
    exit 1
  fi
fi
"$VENV/bin/python" scripts/lock_diff.py "$LOCK" "$new"
mv "$new" "$OUT"
rm -rf "$VENV"
echo "lock: wrote $OUT; the next \`make test\` / \`make demo\` reinstalls .venv from it"
