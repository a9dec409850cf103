#!/usr/bin/env bash
# bench/convert/run.sh — time `qemu-img convert` against `blockimg convert`
# side by side, in one run, on the same half-allocated image.
#
#   bench/convert/run.sh            # 2 GiB image, best of 3 runs per case
#   SIZE_MB=256 REPS=1 bench/convert/run.sh   # quick smoke run
#
# Source image: SIZE_MB MiB raw, every other 1 MiB allocated (50% of the
# image), data 50% compressible (AES-CTR keystream + text; see
# genimage.go). qcow2 and vmdk (monolithicSparse) sources are made from it
# by qemu-img.
#
# Cache mode: both tools read and write through the host page cache and
# make the output durable before exiting. qemu-img runs with
# `-t writeback -T writeback` (its convert default is -t unsafe, which skips
# the final flush); blockimg always flushes (fdatasync) at the end. Both
# use their default parallelism (-m 8). Every output of ours is checked with
# `qemu-img compare` against the source (outside the timing).
#
# Prints a table: seconds for each tool and ratio = qemu time / our time
# (> 1 means blockimg is faster).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
SIZE_MB=${SIZE_MB:-2048}
REPS=${REPS:-3}
bench_init blockimg-convert-bench
bench_build blockimg ./cmd/blockimg
BI="$WORK/blockimg"

SRC=src.raw
if [ ! -f "$SRC" ] || [ "$(stat -c %s "$SRC")" != "$((SIZE_MB << 20))" ]; then
  echo "generating ${SIZE_MB} MiB source image..." >&2
  rm -f src.*
  (cd "$HERE" && go run genimage.go "$WORK/$SRC" "$((SIZE_MB << 20))")
fi
[ -f src.qcow2 ] || qemu-img convert -f raw -O qcow2 "$SRC" src.qcow2
[ -f src.vmdk ] || qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$SRC" src.vmdk

# best_time CMD... : run REPS times (removing out.* first), print the best
# wall-clock seconds.
best_time() {
  local best="" t0 t1 d
  for ((i = 0; i < REPS; i++)); do
    rm -f out.*
    sync
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    d=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
    if [ -z "$best" ] || awk -v d="$d" -v b="$best" 'BEGIN { exit !(d < b) }'; then best=$d; fi
  done
  printf '%.3f' "$best"
}

# Does this build of blockimg write vmdk?
vmdk_create=no
if "$BI" create -q -f vmdk -o subformat=streamOptimized probe.vmdk 1M >/dev/null 2>&1; then
  vmdk_create=yes
fi
rm -f probe.vmdk

results=()
bench_case() { # NAME SRCFMT SRC DSTFMT DST "QEMU-EXTRA" "OUR-EXTRA"
  local name=$1 sf=$2 src=$3 df=$4 dst=$5 qx=$6 ox=$7
  echo "case: $name" >&2
  local tq to
  # shellcheck disable=SC2086
  tq=$(best_time qemu-img convert -t writeback -T writeback -f "$sf" -O "$df" $qx "$src" "$dst")
  # shellcheck disable=SC2086
  to=$(best_time "$BI" convert -f "$sf" -O "$df" $ox "$src" "$dst")
  if ! qemu-img compare -q -f "$sf" -F "$df" "$src" "$dst"; then
    echo "run.sh: $name: blockimg output differs from the source!" >&2
    to="FAIL"
  fi
  local ratio=n/a
  [ "$to" != FAIL ] && ratio=$(awk -v q="$tq" -v o="$to" 'BEGIN { printf "%.2f", q / o }')
  results+=("$(printf '%-34s %10s %10s %8s' "$name" "$tq" "$to" "$ratio")")
  rm -f out.*
}

bench_case "qcow2 -> raw" qcow2 src.qcow2 raw out.raw "" ""
bench_case "raw -> qcow2" raw "$SRC" qcow2 out.qcow2 "" ""
bench_case "raw -> qcow2 -c (compressed)" raw "$SRC" qcow2 out.qcow2 "-c" "-c"
bench_case "vmdk (monolithicSparse) -> qcow2" vmdk src.vmdk qcow2 out.qcow2 "" ""
bench_case "vmdk (monolithicSparse) -> raw" vmdk src.vmdk raw out.raw "" ""
if [ "$vmdk_create" = yes ]; then
  bench_case "raw -> vmdk streamOptimized" raw "$SRC" vmdk out.vmdk "-o subformat=streamOptimized" "-o subformat=streamOptimized"
else
  results+=("$(printf '%-34s %10s %10s %8s' "raw -> vmdk streamOptimized" "-" "-" "n/a (blockimg cannot create vmdk yet)")")
fi

echo
echo "convert benchmark: ${SIZE_MB} MiB image, 50% allocated, best of $REPS; $(nproc) CPUs; $(qemu-img --version | head -1)"
printf '%-34s %10s %10s %8s\n' "case" "qemu-img s" "blockimg s" "ratio"
printf '%s\n' "${results[@]}"
echo "(ratio = qemu-img time / blockimg time; > 1 means blockimg is faster)"
