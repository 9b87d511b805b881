#!/usr/bin/env bash
# Cold start of the eight Lambda functions, measured (tests/benches/lambda_cold_start.rs): builds
# each function's release bootstrap for this machine's architecture, starts moto (the AWS
# emulator, scripts/with-moto.sh) and runs the bench, which spawns each bootstrap against a
# local Lambda Runtime API. Figures and their meaning: docs/benchmarks.md.
#
#   scripts/bench-lambda.sh                       # build, then COLD_START_RUNS=5 per function
#   COLD_START_RUNS=10 scripts/bench-lambda.sh
#   BOOTSTRAP_DIR=/path/to/other/build scripts/bench-lambda.sh   # another build's binaries
#                                                 # (<dir>/ingest or <dir>/ingest/bootstrap ...)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
FUNCTIONS=(ingest enrich route notify claim console sla report-hours)

if [[ -z ${BOOTSTRAP_DIR:-} ]]; then
    # Built as the deployed functions are (scripts/build-lambda.sh): one cargo run from each
    # function's directory, with the Lambda release settings of functions/.cargo/config.toml.
    # Their own target directory, so these settings never replace the embedded binary's build.
    lambda_target=$PWD/target/lambda-host
    for f in "${FUNCTIONS[@]}"; do
        (cd "functions/$f" && CARGO_TARGET_DIR=$lambda_target "$CARGO" build --release --bin "$f")
    done
    BOOTSTRAP_DIR=$lambda_target/release
fi
export BOOTSTRAP_DIR

# Compile the bench before moto starts, so the build is not part of the emulator's life.
"$CARGO" bench -p leadrelay-tests --bench lambda_cold_start --no-run

echo "bootstraps in $BOOTSTRAP_DIR ($(uname -m)):"
for f in "${FUNCTIONS[@]}"; do
    if [[ -f $BOOTSTRAP_DIR/$f ]]; then ls -l "$BOOTSTRAP_DIR/$f"; else ls -l "$BOOTSTRAP_DIR/$f/bootstrap"; fi
done
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"

exec ./scripts/with-moto.sh "$CARGO" bench -p leadrelay-tests --bench lambda_cold_start
