#!/usr/bin/env bash
# bench/qcow2iops/run.sh — 4 KiB request IOPS of `qemu-img bench` against
# blocklayer's qcow2 driver (bench/qcow2iops), side by side in one run, on
# the same fully allocated 1 GiB qcow2 image.
#
#   bench/qcow2iops/run.sh                     # defaults below
#   COUNT=50000 REPS=1 bench/qcow2iops/run.sh  # quick smoke run
#   DIRECT=0 bench/qcow2iops/run.sh            # skip the O_DIRECT cases
#
# Image: `qemu-img create -f qcow2 -o preallocation=full` 1 GiB (64 KiB
# clusters, every cluster allocated and written), so reads hit data and
# writes are in-place overwrites (no allocation) in both tools.
#
# What is compared (qemu-img bench has no random mode: request i goes to
# (offset + i*step) mod image size, with -d requests in flight):
#   seq     qemu-img bench -S 4096            vs ours -pattern stride -S 4096
#           (consecutive 4 KiB blocks, the qemu-img bench default)
#   scatter qemu-img bench -S $SCATTER        vs ours -pattern stride -S $SCATTER
#           SCATTER = 162013 * 4096 bytes (~618 MiB, an odd number of
#           blocks, so every 4 KiB block of the image is visited once per
#           2^18 requests in a scattered order: consecutive requests land
#           ~618 MiB apart, in different L2 tables and host clusters)
#   random  ours -pattern random (uniform random 4 KiB-aligned offsets)
#           next to qemu's scatter figure, as the closest thing qemu-img
#           bench can do (reported separately, marked ~)
# Each at depth 32 (qemu-img bench -d 32; ours: 32 goroutines) and depth 1.
#
# Cache mode: writeback = host page cache, no O_DIRECT, no flushes during
# the run (qemu-img bench -t writeback without --flush-interval; ours: the
# default Options). With DIRECT=1 (default) also -t none (O_DIRECT, qemu's
# default aio=threads) against ours with Options.Direct (O_DIRECT), seq and
# scatter at depth 32, DIRECT_COUNT requests, and both again with our
# GOMAXPROCS=32 (-procs 32; see main.go: with O_DIRECT a blocked goroutine
# holds its P until sysmon hands it off, so at GOMAXPROCS=2 fewer requests
# are in flight). The page cache is warmed
# (`cat image > /dev/null`) before every case.
#
# Timing: qemu-img bench reports the time of its request loop only ("Run
# completed in X seconds", after opening, before closing); ours times its
# request loop only too. Both get the same request count (COUNT). Each
# case runs REPS times, alternating which tool goes first; the table shows
# the best IOPS of each tool and ratio = ours / qemu (> 1: we are faster).
# Every raw line goes to $WORK/raw.log. The image is checked with
# `qemu-img check` at the end (after all our writes).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
COUNT=${COUNT:-300000}
DIRECT_COUNT=${DIRECT_COUNT:-50000}
REPS=${REPS:-3}
DIRECT=${DIRECT:-1}
SCATTER=$((162013 * 4096))
bench_init qcow2iops-bench
bench_build qcow2iops ./bench/qcow2iops
OURS="$WORK/qcow2iops"

IMG=$WORK/img.qcow2
if [ ! -f "$IMG" ]; then
  echo "creating 1 GiB fully allocated image..." >&2
  qemu-img create -q -f qcow2 -o preallocation=full "$IMG" 1G
fi
: >raw.log

warm() { cat "$IMG" >/dev/null; }

# qemu_iops RW STEP DEPTH CACHE N: IOPS of one qemu-img bench run.
qemu_iops() {
  local rw=$1 step=$2 depth=$3 cache=$4 n=$5 w="" out secs
  [ "$rw" = write ] && w=-w
  # shellcheck disable=SC2086
  out=$(qemu-img bench -f qcow2 -t "$cache" -d "$depth" -c "$n" -s 4096 -S "$step" -o 0 $w "$IMG")
  echo "qemu-img bench -f qcow2 -t $cache -d $depth -c $n -s 4096 -S $step -o 0 $w: $(echo "$out" | tail -1)" >>raw.log
  secs=$(echo "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
  awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }'
}

# ours_iops RW PATTERN STEP DEPTH DIRECT N PROCS
ours_iops() {
  local rw=$1 pat=$2 step=$3 depth=$4 direct=$5 n=$6 procs=$7 out
  out=$("$OURS" -f "$IMG" -rw "$rw" -pattern "$pat" -S "$step" -d "$depth" -c "$n" -direct="$direct" -procs "$procs")
  echo "$out" >>raw.log
  echo "$out" | sed -n 's/.* iops=\([0-9.]*\).*/\1/p' | awk '{ printf "%.0f", $1 }'
}

maxf() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 > a + 0) ? b : a }'; }

rows=()
# bench_case LABEL RW PATTERN STEP DEPTH CACHE N [PROCS]
#   PATTERN random compares ours random with qemu at STEP. PROCS sets our
#   GOMAXPROCS (default: Go's default, the CPU count).
bench_case() {
  local label=$1 rw=$2 pat=$3 step=$4 depth=$5 cache=$6 n=$7 procs=${8:-0}
  local direct=false q o bq="" bo="" i
  [ "$cache" = none ] && direct=true
  echo "case: $label $rw d=$depth cache=$cache" >&2
  for ((i = 0; i < REPS; i++)); do
    warm
    if ((i % 2 == 0)); then
      q=$(qemu_iops "$rw" "$step" "$depth" "$cache" "$n")
      o=$(ours_iops "$rw" "$pat" "$step" "$depth" "$direct" "$n" "$procs")
    else
      o=$(ours_iops "$rw" "$pat" "$step" "$depth" "$direct" "$n" "$procs")
      q=$(qemu_iops "$rw" "$step" "$depth" "$cache" "$n")
    fi
    bq=$(maxf "$bq" "$q")
    bo=$(maxf "$bo" "$o")
  done
  rows+=("$(printf '%-9s %-6s %5s %-9s %5s %10s %10s %7s' "$label" "$rw" "$depth" "$cache" "$( ((procs > 0)) && echo "$procs" || nproc)" "$bq" "$bo" \
    "$(awk -v a="$bo" -v b="$bq" 'BEGIN { printf "%.2f", a / b }')")")
}

for rw in read write; do
  for depth in 32 1; do
    bench_case seq "$rw" stride 4096 "$depth" writeback "$COUNT"
    bench_case scatter "$rw" stride "$SCATTER" "$depth" writeback "$COUNT"
    bench_case "random~" "$rw" random "$SCATTER" "$depth" writeback "$COUNT"
  done
done
if [ "$DIRECT" = 1 ]; then
  for rw in read write; do
    bench_case seq "$rw" stride 4096 32 none "$DIRECT_COUNT"
    bench_case scatter "$rw" stride "$SCATTER" 32 none "$DIRECT_COUNT"
    bench_case seq "$rw" stride 4096 32 none "$DIRECT_COUNT" 32
    bench_case scatter "$rw" stride "$SCATTER" 32 none "$DIRECT_COUNT" 32
  done
fi

echo "checking the image after the writes..." >&2
qemu-img check -q "$IMG" || { echo "run.sh: qemu-img check found problems in $IMG" >&2; exit 1; }

echo
echo "qcow2 4 KiB IOPS, 1 GiB fully allocated image, best of $REPS; $(nproc) CPUs; $(uptime | sed 's/.*load/load/')"
echo "$(qemu-img --version | head -1); go: $(go version | cut -d' ' -f3)"
echo "requests per run: $COUNT (writeback), $DIRECT_COUNT (none = O_DIRECT)"
printf '%-9s %-6s %5s %-9s %5s %10s %10s %7s\n' pattern rw depth cache procs qemu-iops our-iops ratio
for r in "${rows[@]}"; do echo "$r"; done
echo "(random~: ours uniform random vs qemu-img bench scatter, its closest pattern;"
echo " procs: our GOMAXPROCS; qemu-img uses its own thread pool of up to 64 I/O threads)"
echo "raw figures: $WORK/raw.log"
