#!/usr/bin/env bash
# Runs a command with a moto server (the AWS emulator, from .venv) on a free loopback port,
# exported as LEADRELAY_MOTO_URL; stops the server afterwards, whatever the command's outcome.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/venv.sh >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
mkdir -p .leadrelay
# One request at a time: see scripts/moto_serial.py for why.
.venv/bin/python scripts/moto_serial.py -H 127.0.0.1 -p "$port" >.leadrelay/moto.log 2>&1 &
moto=$!
trap 'kill "$moto" 2>/dev/null || true; wait "$moto" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$moto" 2>/dev/null; then cat .leadrelay/moto.log >&2; exit 1; fi
  sleep 0.1
done

export LEADRELAY_MOTO_URL="http://127.0.0.1:$port"
"$@"
