#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/ (cargo-fuzz) for FUZZ_SECONDS each, one after another,
# and prints libFuzzer's closing line per target. Any crash, panic or failed assertion stops
# the run with a non-zero exit; the input that caused it is in fuzz/artifacts/<target>/.
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets rustc take the unstable flags
# cargo-fuzz passes. Installs the pinned cargo-fuzz when it is missing.
#
#   scripts/fuzz.sh                       # every target, 60 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh      # longer
#   scripts/fuzz.sh webhook config        # some targets
#   FUZZ_SANITIZER=address scripts/fuzz.sh  # with AddressSanitizer (slower; default: none)
#
# Committed seeds are read from fuzz/corpus/<target>/ and never written; what a run finds goes
# to fuzz/target/corpus/<target>/ (kept between runs, not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
# The targets are safe Rust: what they look for is panics, overflows (debug assertions are on)
# and failed properties, which need no sanitizer; without one they run several times faster.
SANITIZER=${FUZZ_SANITIZER:-none}

if ! cargo fuzz --version 2>/dev/null | grep -qF " $CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi
# libFuzzer's runtime is C++, built by the libfuzzer-sys crate.
command -v c++ >/dev/null || { echo "a C++ compiler (c++) is required" >&2; exit 1; }

export RUSTC_BOOTSTRAP=1
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

cargo fuzz build --fuzz-dir fuzz --sanitizer "$SANITIZER"

summary=()
for target in "${targets[@]}"; do
    work=fuzz/target/corpus/$target
    log=fuzz/target/$target.log
    mkdir -p "$work"
    echo "== fuzz $target: ${FUZZ_SECONDS}s"
    # The first corpus directory receives new inputs; the committed seeds stay as they are.
    if ! cargo fuzz run --fuzz-dir fuzz --sanitizer "$SANITIZER" "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz $target FAILED: see $log and fuzz/artifacts/$target/" >&2
        exit 1
    fi
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
    echo "$done_line"
    summary+=("$target: $done_line")
done

echo "== fuzz summary (${FUZZ_SECONDS}s per target)"
printf '%s\n' "${summary[@]}"
