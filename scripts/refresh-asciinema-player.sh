#!/usr/bin/env bash
# Refreshes the vendored asciinema-player (bastion/web-assets/asciinema-player/) from the npm
# registry, at the pinned version unless one is given: ./scripts/refresh-asciinema-player.sh [3.18.0]
# The web console serves these files from the binary (include_bytes!), so it works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-3.18.0}"
dest=bastion/web-assets/asciinema-player
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "asciinema-player@$version" >/dev/null)
tar -xzf "$work"/asciinema-player-*.tgz -C "$work"
mkdir -p "$dest"
cp "$work/package/dist/bundle/asciinema-player.min.js" "$dest/"
cp "$work/package/dist/bundle/asciinema-player.css" "$dest/"
cp "$work/package/LICENSE" "$dest/LICENSE"
echo "$version" > "$dest/VERSION"
echo "asciinema-player $version vendored in $dest"
