#!/usr/bin/env bash
# The layers, checked over the dependency graph (`cargo tree -e normal`): the core crate links
# no I/O, and each Lambda links only the adapters its stage calls. Run by `make lint`.
#
#   core (shared/)  ←  adapters (adapters/*)  ←  entry points (functions/*, leadrelay/)
#
# A failure names the crate and the dependency that crossed the line.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0

# Every normal dependency (transitively) of a package, one crate name per line.
deps() {
    cargo tree --quiet --offline -p "$1" -e normal --prefix none -f '{p}' 2>/dev/null \
        | awk '{print $1}' | sort -u
}

# forbid PACKAGE WHY CRATE...: fails when PACKAGE depends on any of CRATE (a glob).
forbid() {
    local package=$1 why=$2
    shift 2
    local found
    found=$(deps "$package")
    [ -n "$found" ] || { echo "check-layers: cannot read the dependencies of $package" >&2; exit 2; }
    for pattern in "$@"; do
        while read -r crate; do
            # shellcheck disable=SC2053 # the pattern is a glob on purpose
            if [[ -n "$crate" && $crate == $pattern ]]; then
                echo "check-layers: $package depends on $crate ($why)"
                status=1
            fi
        done <<<"$found"
    done
}

IO="reqwest hyper hyper-util axum tower-http lettre maxminddb rusqlite governor aws-config aws-sdk-* lambda_runtime lambda_http"
ADAPTERS="leadrelay-web leadrelay-console leadrelay-channels leadrelay-email leadrelay-providers leadrelay-geoip leadrelay-sqlite leadrelay-aws"

# shellcheck disable=SC2086 # word splitting of the lists is intended
{
    forbid leadrelay-shared "the core is pure: no HTTP, SMTP, database, GeoIP or AWS" $IO $ADAPTERS
    # Queue-only stages: no HTTP client, web server, e-mail or GeoIP.
    for fn in route sla report-hours; do
        forbid "leadrelay-$fn" "the $fn function calls only DynamoDB and SQS" \
            reqwest axum lambda_http lettre maxminddb governor aws-sdk-sesv2 aws-sdk-sns \
            leadrelay-web leadrelay-channels leadrelay-email leadrelay-providers leadrelay-geoip leadrelay-sqlite \
            leadrelay-https leadrelay-crm
    done
    forbid leadrelay-enrich "enrich calls the enrichment providers, nothing else outside AWS" \
        axum lambda_http lettre maxminddb governor aws-sdk-sesv2 aws-sdk-sns \
        leadrelay-web leadrelay-channels leadrelay-email leadrelay-geoip leadrelay-sqlite
    forbid leadrelay-notify "only notify delivers alerts; it serves no HTTP" \
        axum lambda_http maxminddb leadrelay-web leadrelay-providers leadrelay-geoip leadrelay-sqlite
    for fn in ingest claim console-fn; do
        forbid "leadrelay-$fn" "the HTTP functions deliver no alerts and enrich nothing" \
            lettre maxminddb governor aws-sdk-sesv2 aws-sdk-sns \
            leadrelay-channels leadrelay-email leadrelay-providers leadrelay-geoip leadrelay-sqlite \
            leadrelay-crm
    done
    # One TLS crypto library: every HTTPS client (the AWS SDK's, reqwest's through
    # leadrelay-https, lettre's) runs on ring; a second provider is a second copy of crypto.
    for entry in leadrelay leadrelay-ingest leadrelay-enrich leadrelay-route leadrelay-notify \
        leadrelay-claim leadrelay-console-fn leadrelay-sla leadrelay-report-hours; do
        forbid "$entry" "TLS runs on ring only (leadrelay-https)" aws-lc-rs aws-lc-sys
    done
    # The functions configure the AWS SDK from Lambda's variables (`lambda_sdk_config`):
    # aws-config's default chain (profiles, SSO, STS web identity, IMDS, ECS) is the operators'.
    for fn in ingest enrich route notify claim console-fn sla report-hours; do
        forbid "leadrelay-$fn" "the SDK is configured from the environment, not aws-config's chain" \
            aws-config aws-sdk-sts aws-sdk-sso aws-sdk-ssooidc
    done
    # The same over the whole workspace: `cargo build --bin ingest` (cargo-lambda, sam build)
    # resolves features across every member, so a test crate's feature would reach the Lambdas.
    if cargo tree --quiet --offline --workspace -e normal --prefix none -f '{p}' 2>/dev/null |
        grep -qE '^aws-lc-(rs|sys) '; then
        echo "check-layers: a workspace member enables aws-lc-rs (TLS runs on ring only)"
        status=1
    fi
    # One concern per adapter: an adapter does not reach into another (the AWS crate's
    # `enrich`/`notify` features compose them for the Lambdas, so it is the exception).
    # leadrelay-https and leadrelay-crm are not in $ADAPTERS: they are the shared layer below
    # them (the TLS setting; the HubSpot and Salesforce clients that both the write-back in
    # channels and the owner lookup in providers call), and depend on no adapter themselves.
    for adapter in $ADAPTERS; do
        [ "$adapter" = leadrelay-aws ] && continue
        others=$(echo $ADAPTERS | tr ' ' '\n' | grep -vx "$adapter")
        forbid "$adapter" "one concern per adapter crate" $others
    done
    for shared in leadrelay-https leadrelay-crm; do
        forbid "$shared" "a shared adapter depends on no other adapter" $ADAPTERS
    done
    forbid leadrelay-https "the TLS setting knows no CRM" leadrelay-crm
}

# Each crate states its layer in its Cargo.toml.
for manifest in shared/Cargo.toml adapters/*/Cargo.toml functions/*/Cargo.toml leadrelay/Cargo.toml; do
    if ! grep -qE '^layer = "(core|adapter|entry)"' "$manifest"; then
        echo "check-layers: $manifest has no [package.metadata.leadrelay] layer"
        status=1
    fi
done

[ "$status" = 0 ] && echo "check-layers: core pure, each function links only its adapters"
exit "$status"
