#!/usr/bin/env bash
# patch.sh: notsotuf diff/patch against Debian's C bsdiff/bspatch on the corpus.
#
# Usage: bench/patch.sh [ROW...]          (rows: gobin pybundle big; default all three)
# Env:   CORPUS   corpus directory to reuse (default: /work/corpus if it holds the
#                 tars, else ./corpus built with /work/shared/bench/make-corpus.sh)
#        WORK     scratch directory for patches and outputs (default: a mktemp dir)
#
# For each row it runs, in the same session: C bsdiff, notsotuf diff, C bspatch
# on C's patch, notsotuf patch on ours, then the cross checks (C bspatch applies
# our patch, notsotuf applies C's patch; outputs compared with cmp); then
# notsotuf diff -format compact and notsotuf patch on that patch (output
# compared with cmp). Wall time, CPU time (user+sys) and peak RSS come from
# /usr/bin/time -v. It prints one markdown table; ratios are notsotuf / C
# (bsdiff format, then compact format).
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")/.." && pwd)
rows=("$@"); [ ${#rows[@]} -gt 0 ] || rows=(gobin pybundle big)

if [ -z "${CORPUS:-}" ]; then
  if [ -f /work/corpus/big/new.tar ]; then CORPUS=/work/corpus; else CORPUS=$PWD/corpus; fi
fi
for r in "${rows[@]}"; do
  if [ ! -f "$CORPUS/$r/new.tar" ]; then
    CORPUS=$CORPUS bash /work/shared/bench/make-corpus.sh "$r"
  fi
done
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
command -v bsdiff >/dev/null || apt-get install -y bsdiff >/dev/null
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
bin=$WORK/notsotuf
(cd "$here" && go build -o "$bin" ./cmd/notsotuf)

# measure NAME CMD...: runs CMD under /usr/bin/time -v, sets wall_NAME, cpu_NAME, rss_NAME (MiB)
measure() {
  local name=$1; shift
  local log=$WORK/$name.time
  /usr/bin/time -v "$@" 2>"$log" >/dev/null || { cat "$log" >&2; echo "failed: $*" >&2; exit 1; }
  local el us sy rss
  el=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
  us=$(sed -n 's/.*User time (seconds): //p' "$log")
  sy=$(sed -n 's/.*System time (seconds): //p' "$log")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
  printf -v "wall_$name" '%s' "$(echo "$el" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')"
  printf -v "cpu_$name" '%s' "$(echo "$us + $sy" | bc)"
  printf -v "rss_$name" '%s' "$(echo "scale=1; $rss / 1024" | bc)"
}
ratio() { echo "scale=3; $1 / $2" | bc | sed 's/^\./0./'; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| row | old / new MiB | tool | diff wall s | diff CPU s | diff peak RSS MiB | patch bytes | apply wall s | apply CPU s | apply peak RSS MiB | interop |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
  old=$CORPUS/$r/old.tar new=$CORPUS/$r/new.tar
  w=$WORK/$r; mkdir -p "$w"
  measure cdiff bsdiff "$old" "$new" "$w/c.patch"
  measure odiff "$bin" diff -q "$old" "$new" "$w/ours.patch"
  measure capply bspatch "$old" "$w/c.out" "$w/c.patch"
  measure oapply "$bin" patch -q "$old" "$w/ours.patch" "$w/ours.out"
  cmp "$w/c.out" "$new"; cmp "$w/ours.out" "$new"
  bspatch "$old" "$w/x1.out" "$w/ours.patch" && cmp "$w/x1.out" "$new"
  "$bin" patch -q "$old" "$w/c.patch" "$w/x2.out" && cmp "$w/x2.out" "$new"
  measure kdiff "$bin" diff -q -format compact "$old" "$new" "$w/compact.patch"
  measure kapply "$bin" patch -q "$old" "$w/compact.patch" "$w/compact.out"
  cmp "$w/compact.out" "$new"
  rm -f "$w"/*.out
  cs=$(stat -c %s "$w/c.patch"); os=$(stat -c %s "$w/ours.patch"); ks=$(stat -c %s "$w/compact.patch")
  sizes="$(echo "scale=1; $(stat -c %s "$old") / 1048576" | bc) / $(echo "scale=1; $(stat -c %s "$new") / 1048576" | bc)"
  echo "| $r | $sizes | C bsdiff 4.3 | $wall_cdiff | $cpu_cdiff | $rss_cdiff | $cs | $wall_capply | $cpu_capply | $rss_capply | C bspatch applies ours: ok |"
  echo "| $r | | notsotuf | $wall_odiff | $cpu_odiff | $rss_odiff | $os | $wall_oapply | $cpu_oapply | $rss_oapply | notsotuf applies C's: ok |"
  echo "| $r | | **ratio** | **$(ratio "$wall_odiff" "$wall_cdiff")** | $(ratio "$cpu_odiff" "$cpu_cdiff") | **$(ratio "$rss_odiff" "$rss_cdiff")** | **$(ratio "$os" "$cs")** | **$(ratio "$wall_oapply" "$wall_capply")** | $(ratio "$cpu_oapply" "$cpu_capply") | $(ratio "$rss_oapply" "$rss_capply") | |"
  echo "| $r | | notsotuf compact | $wall_kdiff | $cpu_kdiff | $rss_kdiff | $ks | $wall_kapply | $cpu_kapply | $rss_kapply | notsotuf only; output ok |"
  echo "| $r | | **compact ratio** | **$(ratio "$wall_kdiff" "$wall_cdiff")** | $(ratio "$cpu_kdiff" "$cpu_cdiff") | $(ratio "$rss_kdiff" "$rss_cdiff") | **$(ratio "$ks" "$cs")** | **$(ratio "$wall_kapply" "$wall_capply")** | $(ratio "$cpu_kapply" "$cpu_capply") | $(ratio "$rss_kapply" "$rss_capply") | |"
done
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
