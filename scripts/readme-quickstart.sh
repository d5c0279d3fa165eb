#!/usr/bin/env bash
# Runs the README's quick-start command verbatim in a clean checkout of the committed tree, then
# checks the result with `verify`. Reuses this checkout's build cache (target/ or
# $CARGO_TARGET_DIR), so it only recompiles our own crates.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$root" "$work/checkout"
# The first ```sh block after the <!-- quick-start --> marker.
cmd=$(awk '/<!-- quick-start -->/{f=1} f&&/^```sh/{g=1;next} g&&/^```/{exit} g{print}' "$work/checkout/README.md")
[[ -n $cmd ]] || { echo "README has no quick-start block" >&2; exit 1; }
echo "[quick-start] $cmd" >&2
(cd "$work/checkout" && CARGO_TARGET_DIR="$target" bash -euo pipefail -c "$cmd")
"$target/debug/joplin-restore" verify "$work/checkout/examples/sample.jex" \
  --target "$work/checkout/restored-sync-folder"
echo "README quick start: OK (restored and verified)"
