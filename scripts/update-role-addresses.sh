#!/usr/bin/env bash
# `make update-role-addresses`: refreshes shared/data/role-based-email-addresses.txt (local
# parts such as info, sales, noreply, used by the role-address gate) from the npm package.
set -euo pipefail
cd "$(dirname "$0")/.."
REFRESHED_BY="scripts/update-role-addresses.sh" \
  ./scripts/vendor-npm-list.sh role-based-email-addresses role-based-email-addresses 'require(pkg + "/src/index.js")'
