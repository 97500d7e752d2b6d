#!/usr/bin/env bash
# End-to-end test of notsotuf behind a real nginx (Debian's package).
#
# Builds the CLI, publishes two releases of an app (init, add x2), serves the
# repository with nginx on a loopback port, and runs `notsotuf update`
# through three locations:
#   /plain/   gzip on for every type (application/gzip, .patch, .json
#             included), Range requests as nginx does them;
#   /forced/  every response claims `Content-Encoding: gzip` whatever its
#             bytes (the S3 / CDN misconfiguration that breaks clients which
#             decode content: a .tar.gz then arrives decompressed and fails
#             its hash);
#   /slow/    limit_rate, to kill a client in the middle of a download; the
#             next run resumes from the .part file with a Range request.
# Installs nginx with apt-get when it is missing (needs root). Cleans up
# after itself (nginx stopped, temp dir removed) and exits non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$(pwd)

log() { printf '== %s\n' "$*"; }
fail() { printf 'e2e/nginx: FAIL: %s\n' "$*" >&2; exit 1; }

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  log "installing nginx"
  if [ "$(id -u)" != 0 ]; then fail "nginx is not installed and this is not root"; fi
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx) >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then fail "curl is not installed and this is not root"; fi
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl) >/dev/null
fi

work=$(mktemp -d)
nginx_pid=""
cleanup() {
  local rc=$?
  if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
    kill "$nginx_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ $rc != 0 ] && [ -f "$work/nginx/error.log" ]; then
    echo "--- nginx error.log" >&2; tail -20 "$work/nginx/error.log" >&2 || true
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
# nginx workers run as an unprivileged user when started as root: let them
# read the served tree.
chmod 755 "$work"
umask 022

log "building notsotuf"
go build -o "$work/notsotuf" ./cmd/notsotuf
nt="$work/notsotuf"

log "publishing demo 1.0 and 2.0"
pub="$work/publisher"
mkdir -p "$pub/b1/lib" "$pub/b1/share/empty"
head -c 3000000 /dev/urandom > "$pub/b1/lib/data.bin"
printf '#!/bin/sh\necho demo 1.0\n' > "$pub/b1/app"
chmod 755 "$pub/b1/app"
cp -a "$pub/b1" "$pub/b2"
printf '#!/bin/sh\necho demo 2.0\n' > "$pub/b2/app"
printf 'changed' | dd of="$pub/b2/lib/data.bin" bs=1 seek=1000000 conv=notrunc status=none
printf 'new in 2.0\n' > "$pub/b2/share/notes.txt"
(
  cd "$pub"
  "$nt" init --app demo >/dev/null
  "$nt" add 1.0 b1 >/dev/null
  "$nt" add 2.0 b2
  "$nt" verify
)
srv="$work/www"
(cd "$pub" && "$nt" deploy -q "$srv")
[ -f "$srv/targets/demo-2.0.patch" ] || fail "deploy did not copy the patch"
archive_size=$(stat -c %s "$srv/targets/demo-2.0.tar.gz")

log "starting nginx"
mkdir -p "$work/nginx"
start_nginx() { # start_nginx PORT
  cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon on;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
  types {
    application/json json;
    application/gzip gz;
    application/octet-stream patch;
  }
  default_type application/octet-stream;
  access_log $work/nginx/access.log;
  client_body_temp_path $work/nginx/client_body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  log_format ranges '\$request_uri \$status \$body_bytes_sent range="\$http_range" ae="\$http_accept_encoding"';
  sendfile on;
  gzip on;
  gzip_min_length 0;
  gzip_proxied any;
  gzip_types application/json application/gzip application/octet-stream;
  server {
    listen 127.0.0.1:$1;
    access_log $work/nginx/ranges.log ranges;
    # The configuration docs/hosting.md shows, under a /plain/ prefix.
    location /plain/metadata/ {
      alias $srv/metadata/;
      add_header Cache-Control "no-cache";
    }
    location /plain/targets/ {
      alias $srv/targets/;
      add_header Cache-Control "no-cache";
    }
    location /forced/ {
      alias $srv/;
      gzip off;
      add_header Content-Encoding gzip always;
    }
    location /slow/ {
      alias $srv/;
      limit_rate 200k;
    }
  }
}
EOF
  "$NGINX" -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" 2>>"$work/nginx/start.log"
}
port=""
for _ in 1 2 3 4 5 6 7 8; do
  p=$(( (RANDOM % 20000) + 30000 ))
  if start_nginx "$p"; then port=$p; break; fi
done
[ -n "$port" ] || { cat "$work/nginx/start.log" >&2; fail "nginx did not start"; }
for _ in $(seq 50); do [ -s "$work/nginx/nginx.pid" ] && break; sleep 0.1; done
nginx_pid=$(cat "$work/nginx/nginx.pid")
base="http://127.0.0.1:$port"
curl -fsS "$base/plain/metadata/timestamp.json" >/dev/null || fail "nginx does not serve the repository"

# The server really does what each location claims.
enc=$(curl -sS -o /dev/null -D - -H 'Accept-Encoding: gzip' "$base/plain/targets/demo-2.0.tar.gz" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding"{print $2}')
[ "$enc" = gzip ] || fail "/plain/ does not gzip application/gzip for a client asking for gzip (got '$enc')"
enc=$(curl -sS -o /dev/null -D - "$base/forced/metadata/timestamp.json" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding"{print $2}')
[ "$enc" = gzip ] || fail "/forced/ does not claim Content-Encoding: gzip"
cc=$(curl -sS -o /dev/null -D - "$base/plain/metadata/timestamp.json" | tr -d '\r' | awk -F': ' 'tolower($1)=="cache-control"{print $2}')
[ "$cc" = no-cache ] || fail "/plain/metadata/ does not send Cache-Control: no-cache (got '$cc')"
status=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Range: bytes=100-' "$base/plain/targets/demo-2.0.tar.gz")
[ "$status" = 206 ] || fail "nginx answered a Range request with $status"

# client DIR LOCATION [flags]: an install of 1.0 updated through LOCATION.
client() {
  local dir=$1 loc=$2; shift 2
  "$nt" update --app demo --current 1.0 --install-dir "$dir/app" --cache-dir "$dir/cache" \
    --metadata-url "$base/$loc/metadata" --root "$srv/metadata/1.root.json" "$@"
}
new_install() {
  rm -rf "$1"; mkdir -p "$1"; cp -a "$pub/b1" "$1/app"
}
check_installed() {
  diff -r "$pub/b2" "$1/app" >/dev/null || fail "$1/app differs from release 2.0"
  [ "$("$1/app/app")" = "demo 2.0" ] || fail "$1/app/app does not run as 2.0"
}

log "update through /plain/ (gzip on): patch"
new_install "$work/c1"
out=$(client "$work/c1" plain)
echo "$out"
grep -q 'updated demo 1.0 -> 2.0 (1 patch(es)' <<<"$out" || fail "plain: no patch update"
check_installed "$work/c1"
out=$(client "$work/c1" plain --current 2.0)
grep -q 'is up to date' <<<"$out" || fail "plain: second run is not up to date: $out"

log "update through /forced/ (Content-Encoding: gzip on every response): patch, then full archive"
new_install "$work/c2"
out=$(client "$work/c2" forced); echo "$out"
grep -q 'updated demo 1.0 -> 2.0 (1 patch(es)' <<<"$out" || fail "forced: no patch update"
check_installed "$work/c2"
new_install "$work/c3"
out=$(client "$work/c3" forced --full); echo "$out"
grep -q 'updated demo 1.0 -> 2.0 (full archive' <<<"$out" || fail "forced: no full update"
check_installed "$work/c3"

log "interrupted download through /slow/ (limit_rate), resumed through /plain/"
new_install "$work/c4"
part="$work/c4/cache/demo-2.0.tar.gz.part"
"$nt" update --app demo --current 1.0 --install-dir "$work/c4/app" --cache-dir "$work/c4/cache" \
  --metadata-url "$base/slow/metadata" --root "$srv/metadata/1.root.json" --full &
client_pid=$!
# Kill it (SIGKILL: no chance to clean up) once part of the archive is in.
for _ in $(seq 300); do
  if [ -f "$part" ] && [ "$(stat -c %s "$part")" -ge 300000 ]; then break; fi
  kill -0 $client_pid 2>/dev/null || break
  sleep 0.1
done
kill -KILL $client_pid 2>/dev/null || fail "the client finished before it could be interrupted"
wait $client_pid 2>/dev/null || true
[ -f "$part" ] || fail "no .part file after the interrupted download: $(ls "$work/c4/cache")"
part_size=$(stat -c %s "$part")
echo "part file: $part_size of $archive_size bytes"
[ "$part_size" -gt 0 ] && [ "$part_size" -lt "$archive_size" ] || fail "part file of $part_size bytes"
[ "$("$work/c4/app/app")" = "demo 1.0" ] || fail "the interrupted update changed the install"
out=$(client "$work/c4" plain --full); echo "$out"
grep -q 'updated demo 1.0 -> 2.0 (full archive' <<<"$out" || fail "resume: no update"
check_installed "$work/c4"
[ ! -e "$part" ] || fail "part file left behind"
grep -q "^/plain/targets/demo-2.0.tar.gz 206 $((archive_size - part_size)) range=\"bytes=$part_size-\"" "$work/nginx/ranges.log" \
  || { grep demo-2.0.tar.gz "$work/nginx/ranges.log" >&2; fail "the rerun did not resume with Range: bytes=$part_size-"; }

log "ok: nginx end-to-end (gzip, forced Content-Encoding, resumed download)"
