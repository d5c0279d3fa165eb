#!/usr/bin/env bash
# The whole test suite, as CI runs it: install the real peers (Joplin CLI, WebDAV and S3
# servers), check formatting and lints, then run every test. The tests start and stop the
# servers themselves, on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
bash scripts/readme-quickstart.sh
