#!/usr/bin/env bash
# `make run`: build leadrelay, start the embedded pipeline, send the sample webhooks from
# events/webhooks/, show who got each lead, then keep serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

LISTEN="${LEADRELAY_LISTEN:-127.0.0.1:8080}"
DATA_DIR="${LEADRELAY_DATA_DIR:-.leadrelay/data}"
CONFIG="${LEADRELAY_CONFIG:-config/leadrelay.toml}"
URL="http://${LISTEN}"
BIN=target/release/leadrelay

cargo build --release --quiet -p leadrelay
mkdir -p "$DATA_DIR" .leadrelay

# Alerts (stdout) stay on this terminal; the structured logs go to a file.
"$BIN" serve --config "$CONFIG" --listen "$LISTEN" --data-dir "$DATA_DIR" 2>.leadrelay/serve.log &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
  if curl -fsS "$URL/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "leadrelay serve exited; see .leadrelay/serve.log" >&2
    cat .leadrelay/serve.log >&2
    exit 1
  fi
  sleep 0.1
done

echo "== leadrelay is up on $URL (logs: .leadrelay/serve.log, data: $DATA_DIR)"
echo "== sending the sample webhooks from events/webhooks/"
echo
"$BIN" send --config "$CONFIG" --url "$URL" --wait events/webhooks/*.json
sleep 0.2
echo
echo "== each alert above is what the owner got; the lines with 'owner' are read back over GET /leads/{id}."
echo "== send your own lead (edit a copy of an event file first):"
echo "   $BIN send --url $URL --wait events/webhooks/02-capture-emea-pricing.json"
echo "== or with curl, signed and valid for the next 5 minutes:"
echo "   $("$BIN" sign --config "$CONFIG" --url "$URL" events/webhooks/02-capture-emea-pricing.json)"
echo "== inspect a lead:  $BIN lead <lead_id> --data-dir $DATA_DIR"
echo "== the console:     $URL/console  (sign in as ops@yourco.example, password leadrelay-demo-operator)"
if [ -n "${LEADRELAY_RUN_ONCE:-}" ]; then
  exit 0
fi
echo "== serving until Ctrl-C"
wait "$SERVER"
