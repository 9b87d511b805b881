#!/usr/bin/env bash
# Build the Lambda functions (ingest, enrich, route, notify, claim, console, sla, report-hours) for arm64 in release mode
# with the venv's cargo-lambda (zig as the cross linker: no Docker, no cross toolchain), then
# print each function's bootstrap and zip sizes.
#
#   scripts/build-lambda.sh                 # zips in target/lambda/<bin>/bootstrap.zip
#   LAMBDA_DIR=dist scripts/build-lambda.sh # elsewhere
#
# A cold build takes several minutes on 2 cores (all binaries in one cargo run).
set -euo pipefail
cd "$(dirname "$0")/.."

BINARIES=(ingest enrich route notify claim console sla report-hours)
TARGET=aarch64-unknown-linux-gnu
LAMBDA_DIR=${LAMBDA_DIR:-target/lambda}
# Its own target directory: cross artifacts share nothing with host builds anyway, and this
# way a Lambda build never waits for (or blocks) a `cargo test` holding target/'s lock.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/lambda-build}
BUDGET=$((4 * 1000 * 1000))   # design brief: at most 4 MB zipped per function
# shellcheck source=scripts/lambda-profile.sh
source scripts/lambda-profile.sh

./scripts/venv.sh
# `cargo lambda` finds cargo-lambda on PATH, and cargo-lambda finds zig through the venv's
# python (the ziglang package).
export PATH="$PWD/.venv/bin:$PATH"

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    command -v rustup >/dev/null || { echo "build-lambda: rustup is required to add $TARGET" >&2; exit 1; }
    echo "build-lambda: installing the Rust target $TARGET"
    rustup target add "$TARGET"
fi

bin_args=()
for bin in "${BINARIES[@]}"; do
    bin_args+=(--bin "$bin")
    rm -f "$LAMBDA_DIR/$bin/bootstrap.zip" "$LAMBDA_DIR/$bin/bootstrap"
done

start=$(date +%s)
cargo lambda build --release --arm64 --output-format zip --lambda-dir "$LAMBDA_DIR" "${bin_args[@]}"
echo "build-lambda: built in $(( $(date +%s) - start )) s"

.venv/bin/python - "$LAMBDA_DIR" "$BUDGET" "${BINARIES[@]}" <<'PY'
import sys, zipfile
from pathlib import Path

lambda_dir, budget, bins = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
human = lambda n: f"{n / 1024 / 1024:.2f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB"
print(f"{'function':<10}{'bootstrap':>12}{'zip':>12}   path")
missing = 0
for b in bins:
    z = lambda_dir / b / "bootstrap.zip"
    if not z.is_file():
        print(f"{b:<10}{'-':>12}{'-':>12}   {z} missing")
        missing += 1
        continue
    info = zipfile.ZipFile(z).getinfo("bootstrap")
    size = z.stat().st_size
    flag = f"   OVER the {budget // 1000 // 1000} MB budget" if size > budget else ""
    print(f"{b:<10}{human(info.file_size):>12}{human(size):>12}   {z}{flag}")
sys.exit(1 if missing else 0)
PY
