#!/usr/bin/env bash
# bench/qcow2check/run.sh — time `qemu-img check` against blocklayer's
# qcow2 Check (bench/qcow2check) side by side, in one run, on the same
# 1 GiB qcow2 images with 512-byte clusters, every cluster allocated.
#
#   bench/qcow2check/run.sh                       # both images, 5 runs each
#   IMAGES=metadata REPS=3 bench/qcow2check/run.sh  # quick run
#
# Images (built once, kept in $WORK; 1 GiB virtual, cluster_size=512,
# 2097152 data clusters + 32768 L2 tables + ~8300 refcount blocks):
#   metadata   qemu-img create -f qcow2 -o cluster_size=512,preallocation=metadata
#              (data clusters allocated in guest order: 0% fragmented)
#   scattered  an empty cluster_size=512 image filled by
#              qemu-img bench -w -d 32 -s 512 -S 1296111*512 -c 2097152
#              (every 512-byte block written once, in a scattered order, so
#              allocation order differs from guest order: ~98% fragmented,
#              L2 tables and refcount blocks interleaved with data).
#              Building it takes several minutes (qemu-img's allocation
#              speed); it is reused by later runs.
#
# Both tools run as separate processes, read-only, on a warm page cache
# (`cat image > /dev/null` first) and are timed by wall clock from exec to
# exit (so our figure includes process start, Open and Check; qemu-img's
# includes its start, open and check). REPS runs each, alternating which
# tool goes first. The table shows the median and best seconds of each
# and ratio = qemu median / our median (> 1: we are faster). The check
# results (qemu-img check --output=json and ours) must agree on every
# counter, or the script fails.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
REPS=${REPS:-5}
IMAGES=${IMAGES:-metadata scattered}
bench_init qcow2check-bench
bench_build qcow2check ./bench/qcow2check
OURS="$WORK/qcow2check"

make_image() { # NAME
  local img=$WORK/$1.qcow2
  [ -f "$img" ] && return
  echo "creating $1 image (once)..." >&2
  case $1 in
  metadata)
    qemu-img create -q -f qcow2 -o cluster_size=512,preallocation=metadata "$img.tmp" 1G
    ;;
  scattered)
    qemu-img create -q -f qcow2 -o cluster_size=512 "$img.tmp" 1G
    qemu-img bench -q -f qcow2 -t writeback -w -d 32 -c 2097152 -s 512 \
      -S $((1296111 * 512)) --pattern=0x5a "$img.tmp"
    ;;
  *) echo "run.sh: unknown image $1" >&2; exit 1 ;;
  esac
  mv "$img.tmp" "$img"
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }

# counters FILE.json: the numeric fields, one "name value" a line, sorted
counters() { grep -o '"[a-z-]*": [0-9]*' "$1" | tr -d '":' | sort; }

# median and min of the numbers on stdin
stats() { sort -g | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.4f %.4f\n", m, a[1] }'; }

rows=()
for name in $IMAGES; do
  make_image "$name"
  img=$WORK/$name.qcow2
  echo "case: $name" >&2
  qt=() ot=() oc=()
  for ((i = 0; i < REPS; i++)); do
    cat "$img" >/dev/null
    for who in $( ((i % 2 == 0)) && echo "qemu ours" || echo "ours qemu"); do
      if [ "$who" = qemu ]; then
        t0=$(now)
        rc=0
        qemu-img check -f qcow2 --output=json "$img" >qemu.json || rc=$?
        t1=$(now)
        qt+=("$(secs "$t0" "$t1")")
        [ "$rc" = 0 ] || { echo "run.sh: qemu-img check exit $rc on $img" >&2; exit 1; }
      else
        t0=$(now)
        rc=0
        "$OURS" -f "$img" >ours.json 2>ours.err || rc=$?
        t1=$(now)
        ot+=("$(secs "$t0" "$t1")")
        [ "$rc" = 0 ] || { echo "run.sh: our check exit $rc on $img" >&2; cat ours.err >&2; exit 1; }
        oc+=("$(sed -n 's/.*check=\([0-9.]*\)s.*/\1/p' ours.err)")
      fi
    done
  done
  if ! diff <(counters qemu.json) <(counters ours.json) >/dev/null; then
    echo "run.sh: check results differ on $img (qemu < > ours):" >&2
    diff <(counters qemu.json) <(counters ours.json) >&2 || true
    exit 1
  fi
  read -r qmed qmin < <(printf '%s\n' "${qt[@]}" | stats)
  read -r omed omin < <(printf '%s\n' "${ot[@]}" | stats)
  read -r cmed _ < <(printf '%s\n' "${oc[@]}" | stats)
  frag=$(sed -n 's/.*"fragmented-clusters": \([0-9]*\).*/\1/p' qemu.json)
  rows+=("$(printf '%-10s %10s %9s %9s %9s %9s %9s %7s' "$name" "${frag:-0}" "$qmed" "$qmin" "$omed" "$omin" "$cmed" \
    "$(awk -v a="$qmed" -v b="$omed" 'BEGIN { printf "%.1f", a / b }')")")
  echo "  qemu: ${qt[*]}" >&2
  echo "  ours: ${ot[*]} (Check only: ${oc[*]})" >&2
done

echo
echo "qcow2 check, 1 GiB image, 512-byte clusters, all allocated; $REPS runs each; $(nproc) CPUs; $(uptime | sed 's/.*load/load/')"
echo "$(qemu-img --version | head -1); go: $(go version | cut -d' ' -f3)"
echo "seconds, wall clock per process (median / best); our-check = Check() alone (median)"
printf '%-10s %10s %9s %9s %9s %9s %9s %7s\n' image fragmented qemu-med qemu-best our-med our-best our-check ratio
for r in "${rows[@]}"; do echo "$r"; done
echo "(ratio = qemu median / our median; both tools reported the same counters)"
