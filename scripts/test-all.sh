#!/usr/bin/env bash
# The whole test suite, as CI runs it: install the real peers (Joplin CLI, WebDAV and S3
# servers), check formatting and lints, run the README's quick start, then run every test. The
# tests start and stop the servers themselves, on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

# The peers install (mostly downloads) while our code is checked and built.
install_log=$(mktemp)
bash scripts/install-test-deps.sh >"$install_log" 2>&1 &
install=$!
trap 'kill "$install" 2>/dev/null || true; rm -f "$install_log"' EXIT

cargo fmt --all -- --check
bash scripts/readme-quickstart.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-run

if ! wait "$install"; then
  cat "$install_log" >&2
  echo "installing the test peers failed (log above)" >&2
  exit 1
fi
cat "$install_log" >&2
# Many tests wait on a server, a rate limit or the Joplin CLI: four at a time keeps two cores busy.
cargo test --workspace --locked -- --test-threads 4
