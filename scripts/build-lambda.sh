#!/usr/bin/env bash
# Build the Lambda functions (ingest, enrich, route, notify, claim, console, sla, report-hours) for arm64 in release mode
# with the venv's cargo-lambda (zig as the cross linker: no Docker, no cross toolchain), then
# print each function's bootstrap and zip sizes.
#
#   scripts/build-lambda.sh                       # zips in target/lambda/<bin>/bootstrap.zip
#   scripts/build-lambda.sh claim console         # some functions only
#   LAMBDA_DIR=dist scripts/build-lambda.sh       # elsewhere
#
# Each function is built as `sam build` builds it: one cargo run from the function's directory,
# so the release settings are the ones in functions/.cargo/config.toml and the function's own
# .cargo/config.toml, and only that function's features are compiled in (one run for all would
# unify them). A cold build takes 20-30 minutes on 2 cores (the dependencies are compiled once
# per panic strategy); after a source change, one to three minutes per function.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(ingest enrich route notify claim console sla report-hours)
BINARIES=("${@:-${ALL[@]}}")
TARGET=aarch64-unknown-linux-gnu
LAMBDA_DIR=${LAMBDA_DIR:-target/lambda}
# Its own target directory: cross artifacts share nothing with host builds anyway, and this
# way a Lambda build never waits for (or blocks) a `cargo test` holding target/'s lock.
# Absolute: cargo runs from each function's directory.
CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target/lambda-build}")
export CARGO_TARGET_DIR
BUDGET=$((4 * 1000 * 1000))   # design brief: at most 4 MB zipped per function

./scripts/venv.sh
# `cargo lambda` finds cargo-lambda on PATH, and cargo-lambda finds zig through the venv's
# python (the ziglang package).
export PATH="$PWD/.venv/bin:$PATH"

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    command -v rustup >/dev/null || { echo "build-lambda: rustup is required to add $TARGET" >&2; exit 1; }
    echo "build-lambda: installing the Rust target $TARGET"
    rustup target add "$TARGET"
fi

LAMBDA_DIR=$(realpath -m "$LAMBDA_DIR")
start=$(date +%s)
for bin in "${BINARIES[@]}"; do
    [[ -d functions/$bin ]] || { echo "build-lambda: no function $bin (functions/$bin)" >&2; exit 2; }
    rm -f "$LAMBDA_DIR/$bin/bootstrap.zip" "$LAMBDA_DIR/$bin/bootstrap"
    (cd "functions/$bin" &&
        cargo lambda build --release --arm64 --output-format zip --lambda-dir "$LAMBDA_DIR" --bin "$bin")
done
echo "build-lambda: built in $(( $(date +%s) - start )) s"

.venv/bin/python - "$LAMBDA_DIR" "$BUDGET" "${BINARIES[@]}" <<'PY'
import sys, zipfile
from pathlib import Path

lambda_dir, budget, bins = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
print(f"{'function':<14}{'bootstrap':>12}{'zip (bytes)':>13}   against {budget // 1000 // 1000} MB")
missing = 0
for b in bins:
    z = lambda_dir / b / "bootstrap.zip"
    if not z.is_file():
        print(f"{b:<14}{'-':>12}{'-':>13}   {z} missing")
        missing += 1
        continue
    info = zipfile.ZipFile(z).getinfo("bootstrap")
    size = z.stat().st_size
    against = f"OVER by {size - budget:,}" if size > budget else f"{budget - size:,} under"
    print(f"{b:<14}{info.file_size:>12,}{size:>13,}   {against}")
print(f"zips in {lambda_dir}/<function>/bootstrap.zip")
sys.exit(1 if missing else 0)
PY
