#!/usr/bin/env bash
# `make update-free-mail`: refreshes shared/data/free-email-domains.txt (free and disposable
# mailbox domains, used by enrichment's free-mail detection) from the npm package.
set -euo pipefail
cd "$(dirname "$0")/.."
REFRESHED_BY="scripts/update-free-mail.sh" \
  ./scripts/vendor-npm-list.sh free-email-domains free-email-domains 'require(pkg + "/domains.json")'
