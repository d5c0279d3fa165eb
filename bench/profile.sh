#!/usr/bin/env bash
# Where the time of one restore into s3s-fs goes: `perf record` of joplin-restore (client) and of
# the s3s-fs process (server) during the same restore, plus /usr/bin/time -v of the client.
#   bench/profile.sh BACKUP.jex [OUT_DIR]
# Needs perf (apt linux-perf), s3s-fs in $JR_TOOLS/cargo-root/bin, a release build
# (bench/run.sh builds one). Everything listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
JEX=${1:?usage: bench/profile.sh BACKUP.jex [OUT_DIR]}
OUT=${2:-$(mktemp -d /tmp/jr-profile-XXXX)}
mkdir -p "$OUT"
TOOLS=${JR_TOOLS:-$PWD/.tools}
BIN=${CARGO_TARGET_DIR:-target}/release/joplin-restore
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d /tmp/jr-profile-s3-XXXX)
"$TOOLS/cargo-root/bin/s3s-fs" --host 127.0.0.1 --port "$PORT" --access-key labkey \
  --secret-key labsecret "$DATA" >"$OUT/s3s-fs.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done
export AWS_ACCESS_KEY_ID=labkey AWS_SECRET_ACCESS_KEY=labsecret AWS_REGION=us-east-1 \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
perf record -F 499 -o "$OUT/server.perf" -p "$SERVER" >/dev/null 2>&1 &
PERF_SERVER=$!
/usr/bin/time -v -o "$OUT/client.time" \
  perf record -F 499 -o "$OUT/client.perf" -- \
  "$BIN" restore "$JEX" --target s3://prof --endpoint "http://127.0.0.1:$PORT" --path-style \
  --create-bucket --yes --no-snapshot --quiet --json --journal-dir "$OUT/journals" \
  >"$OUT/restore.json" 2>"$OUT/restore.err"
kill -INT $PERF_SERVER
wait $PERF_SERVER 2>/dev/null || true
perf report -i "$OUT/client.perf" --stdio --no-children --sort dso,symbol 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -40 | cut -c1-120 >"$OUT/client.top" || true
perf report -i "$OUT/server.perf" --stdio --no-children --sort dso,symbol 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -40 | cut -c1-120 >"$OUT/server.top" || true
echo "== restore report"; cat "$OUT/restore.json"
echo "== client /usr/bin/time -v"; grep -E 'Elapsed|User time|System time|Maximum resident|Percent of CPU' "$OUT/client.time"
echo "== client hottest symbols"; head -25 "$OUT/client.top"
echo "== s3s-fs hottest symbols"; head -25 "$OUT/server.top"
echo "(all in $OUT)"
