#!/usr/bin/env bash
# The benchmark of issue #11, in one command: builds --release and runs bench/compare.rs against
# real servers on 127.0.0.1 (Apache WebDAV, s3s-fs, the Joplin Server emulator, the real
# Joplin CLI, rclone). Options: bench/run.sh --help. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export JR_TOOLS="${JR_TOOLS:-$PWD/.tools}"
cargo bench --locked --bench compare -- "$@"
