#!/usr/bin/env bash
# Installs everything the test suite needs on a clean Debian machine (root), from package registries
# only, pinned. Idempotent: what is already there is skipped. Tools go to $JR_TOOLS (default .tools/).
#   apache2 (mod_dav) + rclone            real WebDAV servers (openssl: test certificates)
#   s3s-fs 0.14.1 (crates.io), s3rver 3.7.1 (npm)   real S3 servers
#   joplin 3.5.1 (npm)                    the real Joplin CLI, judge of every restore
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${JR_TOOLS:-$root/.tools}
JOPLIN_VERSION=3.5.1   # joplin@3.6.x needs @joplin/utils ~3.6, which the registry lacks
S3S_VERSION=0.14.1     # newest s3s-fs that builds with rustc 1.95
S3RVER_VERSION=3.7.1
log() { printf '[install] %s\n' "$*" >&2; }
mkdir -p "$TOOLS"

need=()
for p in apache2 apache2-utils rclone curl openssl bsdutils libsecret-1-dev pkg-config g++ make python3 p7zip-full; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

npm_pkg() { # dir package version
  local d=$TOOLS/$1
  if grep -qs "\"version\": \"$3\"" "$d/node_modules/$2/package.json"; then return 0; fi
  mkdir -p "$d"
  echo "{\"name\":\"jr-$1\",\"private\":true}" >"$d/package.json"
  log "npm install $2@$3"
  # node-gyp must use the installed node headers, not download them.
  (cd "$d" && npm_config_nodedir=/usr npm install --no-audit --no-fund --loglevel=error "$2@$3" >"$d/npm.log" 2>&1) \
    || { tail -40 "$d/npm.log" >&2; exit 1; }
}
npm_pkg joplin-cli joplin "$JOPLIN_VERSION" &
npm_job=$!
npm_pkg s3rver s3rver "$S3RVER_VERSION"

if [[ ! -x $TOOLS/cargo-root/bin/s3s-fs ]]; then
  log "cargo install s3s-fs@$S3S_VERSION"
  cargo install -q "s3s-fs@$S3S_VERSION" --features binary --locked --root "$TOOLS/cargo-root"
fi
wait "$npm_job"
"$TOOLS/joplin-cli/node_modules/.bin/joplin" --profile "$TOOLS/.probe-profile" version </dev/null | grep -q "joplin $JOPLIN_VERSION"
log "tools ready in $TOOLS"
