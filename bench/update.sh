#!/usr/bin/env bash
# update.sh: the client's patch update against C bspatch + tar -x of the same data.
#
# Usage: bench/update.sh [ROW...]         (rows: pybundle big; default both)
# Env:   CORPUS  corpus directory to reuse (default: /work/corpus if it holds the
#                tars, else ./corpus built with ../shared/bench/make-corpus.sh)
#        WORK    scratch directory (default: a mktemp dir, removed at the end)
#        FORMATS patch formats to measure (default: "bsdiff"; "bsdiff compact"
#                for both). With compact, the baseline's BSDIFF40 patch is made
#                by notsotuf diff from the same tars (C bspatch cannot apply a
#                compact patch).
#
# For each row: the corpus's old.tar and new.tar are unpacked into two bundle
# directories and published as releases 1.0.0 and 1.1.0 of app "bench" with
# the notsotuf CLI (init, add, add: the patch is notsotuf's). The client
# installs 1.0.0 (full archive, which also caches the verified tar as the next
# patch base), 1.1.0 is published, and the client, measured, updates to it by
# patch from `notsotuf serve` on loopback: TUF refresh, download, patch, hash checks, extraction,
# staging and the atomic swap. The baseline, measured in the same run, is
# C bspatch applying the same patch to the same base tar, followed by
# `tar -x` of the result into an empty directory. Both results are compared
# (diff -r). Wall time and peak RSS come from /usr/bin/time -v.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")/.." && pwd)
rows=("$@"); [ ${#rows[@]} -gt 0 ] || rows=(pybundle big)
if [ -z "${CORPUS:-}" ]; then
  if [ -f /work/corpus/big/new.tar ]; then CORPUS=/work/corpus; else CORPUS=$PWD/corpus; fi
fi
shared=$(cd "$here/../shared" 2>/dev/null && pwd || echo /work/shared)
for r in "${rows[@]}"; do
  [ -f "$CORPUS/$r/new.tar" ] || CORPUS=$CORPUS bash "$shared/bench/make-corpus.sh" "$r"
done
command -v /usr/bin/time >/dev/null || apt-get install -y -q time >/dev/null
command -v bspatch >/dev/null || apt-get install -y -q bsdiff >/dev/null
own_work=0
if [ -z "${WORK:-}" ]; then WORK=$(mktemp -d); own_work=1; fi
mkdir -p "$WORK"
bin=$WORK/notsotuf
(cd "$here" && go build -o "$bin" ./cmd/notsotuf)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; [ $own_work = 1 ] && rm -rf "$WORK"; true; }
trap cleanup EXIT

# measure NAME CMD...: runs CMD under /usr/bin/time -v; sets wall_NAME (s) and rss_NAME (MiB)
measure() {
  local name=$1; shift
  local log=$WORK/$name.time
  /usr/bin/time -v "$@" 2>"$log" >/dev/null || { cat "$log" >&2; echo "failed: $*" >&2; exit 1; }
  local el rss
  el=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
  printf -v "wall_$name" '%s' "$(echo "$el" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')"
  printf -v "rss_$name" '%s' "$(echo "scale=1; $rss / 1024" | bc)"
}
ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| row | format | bundle MiB | patch MiB | notsotuf update wall s | peak RSS MiB | bspatch + tar -x wall s | peak RSS MiB | wall ratio | same tree |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
for format in ${FORMATS:-bsdiff}; do
  w=$WORK/$r; rm -rf "$w"; mkdir -p "$w/b1" "$w/b2"
  tar -xf "$CORPUS/$r/old.tar" -C "$w/b1"
  tar -xf "$CORPUS/$r/new.tar" -C "$w/b2"
  (cd "$w" && "$bin" init --app bench >/dev/null && "$bin" add 1.0.0 b1 >/dev/null)
  p=$(port)
  (cd "$w" && exec "$bin" serve --addr "127.0.0.1:$p" >/dev/null 2>&1) & srv=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$p/metadata/root.json" >/dev/null && break; sleep 0.1; done
  common=(--app bench --install-dir "$w/app" --cache-dir "$w/cache" --metadata-url "http://127.0.0.1:$p/metadata" --root "$w/repository/metadata/1.root.json")
  "$bin" update "${common[@]}" --current 0 >/dev/null
  (cd "$w" && "$bin" add 1.1.0 b2 --patch-format "$format" >/dev/null)
  measure upd "$bin" update "${common[@]}" --current 1.0.0
  kill "$srv"; wait "$srv" 2>/dev/null || true; srv=
  # Baseline: the same patch on the same base tar, then tar -x.
  gzip -dc "$w/repository/targets/bench-1.0.0.tar.gz" > "$w/base.tar"
  mkdir -p "$w/ref"
  refpatch=$w/repository/targets/bench-1.1.0.patch
  if [ "$format" != bsdiff ]; then
    gzip -dc "$w/repository/targets/bench-1.1.0.tar.gz" > "$w/want.tar"
    refpatch=$w/ref.patch
    "$bin" diff -q "$w/base.tar" "$w/want.tar" "$refpatch"
    rm -f "$w/want.tar"
  fi
  measure ref sh -c "bspatch '$w/base.tar' '$w/new.tar' '$refpatch' && tar -xf '$w/new.tar' -C '$w/ref'"
  same=yes; diff -r --no-dereference "$w/app" "$w/ref" >/dev/null || same=NO
  mib=$(du -sm "$w/b2" | cut -f1)
  pm=$(echo "scale=2; $(stat -c %s "$w/repository/targets/bench-1.1.0.patch") / 1048576" | bc | sed 's/^\./0./')
  echo "| $r | $format | $mib | $pm | $wall_upd | $rss_upd | $wall_ref | $rss_ref | $(ratio "$wall_upd" "$wall_ref") | $same |"
  rm -rf "$w"
done
done
