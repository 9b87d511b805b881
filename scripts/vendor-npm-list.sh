#!/usr/bin/env bash
# Vendors a word list from an npm package into shared/data/, one entry per line, with a header
# naming the package, its version and its licence, and the package's licence text beside it.
# Used by update-free-mail.sh and update-role-addresses.sh; needs npm and node.
#
#   vendor-npm-list.sh PACKAGE OUTPUT_NAME 'JS expression giving an array, with `pkg` = package dir'
set -euo pipefail
cd "$(dirname "$0")/.."

package="$1"
name="$2"
expression="$3"
out="shared/data/${name}.txt"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null && tar xzf ./*.tgz)
pkg="$work/package"

version="$(node -p "require('$pkg/package.json').version")"
licence="$(node -p "require('$pkg/package.json').license")"
case "$licence" in
  MIT | ISC | BSD-2-Clause | BSD-3-Clause | Apache-2.0 | CC0-1.0 | Unlicense) ;;
  *) echo "$package $version is licensed $licence: check it before vendoring" >&2; exit 1 ;;
esac

{
  echo "# ${package} ${version} (npm, https://www.npmjs.com/package/${package}), licence ${licence}:"
  echo "# see ${name}.LICENSE. Refreshed by ${REFRESHED_BY:-scripts/vendor-npm-list.sh}; do not edit by hand."
  PKG="$pkg" node -e "
    const pkg = process.env.PKG;
    const list = ${expression};
    const seen = new Set();
    for (const raw of list) {
      const entry = String(raw).trim().toLowerCase();
      if (entry && !entry.startsWith('#') && !seen.has(entry)) { seen.add(entry); console.log(entry); }
    }
  " | LC_ALL=C sort
} >"$out.tmp"
mv "$out.tmp" "$out"

licence_file="$(ls "$pkg" | grep -i -m1 '^licen[cs]e' || true)"
if [ -n "$licence_file" ]; then
  cp "$pkg/$licence_file" "shared/data/${name}.LICENSE"
  chmod 644 "shared/data/${name}.LICENSE"
fi
echo "$out: $package $version ($licence), $(grep -vc '^#' "$out") entries"
