#!/usr/bin/env bash
# Create or refresh the project virtualenv (.venv) with the pinned tools of
# requirements-dev.txt: cfn-lint, aws-sam-cli, moto[server], cargo-lambda (+ ziglang).
#
# Idempotent and quick: a stamp inside the venv records the hash of requirements-dev.txt and
# the Python version; when both match, nothing runs. Safe to call from several scripts at
# once (flock on a file inside the venv).
#
#   scripts/venv.sh              # create/refresh .venv
#   scripts/venv.sh --recreate   # delete .venv and build it from scratch
#   PYTHON=python3.12 scripts/venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
REQ=requirements-dev.txt
PYTHON=${PYTHON:-python3}
STAMP=$VENV/.requirements-dev.stamp

want() {
    # What the venv must have been built from: the pins and the interpreter's version.
    printf '%s %s\n' "$(sha256sum "$REQ" | cut -d' ' -f1)" \
        "$("$PYTHON" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')"
}

up_to_date() {
    [[ -f $STAMP && -x $VENV/bin/python ]] && [[ $(cat "$STAMP") == "$(want)" ]] \
        && "$VENV/bin/python" -c '' 2>/dev/null
}

if [[ ${1:-} != --recreate ]] && up_to_date; then
    exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "venv.sh: $PYTHON not found" >&2; exit 1; }
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || {
    echo "venv.sh: $PYTHON lacks venv/ensurepip (Debian: apt-get install python3-venv)" >&2
    exit 1
}

mkdir -p "$VENV"
exec 9>"$VENV/.lock"
flock 9
# Another caller may have finished the work while we waited for the lock.
if [[ ${1:-} != --recreate ]] && up_to_date; then
    exit 0
fi

start=$(date +%s)
want_py=$(want | cut -d' ' -f2)
have_py=$("$VENV/bin/python" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))' \
    2>/dev/null || true)
if [[ ${1:-} == --recreate || $have_py != "$want_py" ]]; then
    echo "venv.sh: creating $VENV"
    find "$VENV" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
    "$PYTHON" -m venv "$VENV"
else
    echo "venv.sh: $REQ changed, refreshing $VENV"
fi
rm -f "$STAMP"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
pip_pin=$(grep -E '^pip==' "$REQ" || true)
if [[ -n $pip_pin ]]; then
    "$VENV/bin/python" -m pip install --quiet --require-virtualenv "$pip_pin"
fi
"$VENV/bin/python" -m pip install --quiet --require-virtualenv -r "$REQ"
check=$("$VENV/bin/python" -m pip check) || { echo "$check" >&2; exit 1; }

want >"$STAMP"
echo "venv.sh: $VENV ready in $(( $(date +%s) - start )) s" \
    "($("$VENV/bin/cfn-lint" --version), $("$VENV/bin/sam" --version)," \
    "$("$VENV/bin/cargo-lambda" lambda --version 2>/dev/null || echo cargo-lambda ?))"
