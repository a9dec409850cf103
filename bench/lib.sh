# bench/lib.sh — setup shared by the bench/*/run.sh scripts (sourced, not
# run). Defines ROOT (the repository) and:
#   bench_init DIR       WORK=$BENCH_DIR or $TMPDIR/DIR (default /tmp/DIR),
#                        created and made the current directory; fails
#                        unless qemu-img and go are installed
#   bench_build NAME PKG builds the Go package PKG as $WORK/NAME
#   now                  the wall clock in seconds, with nanoseconds
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bench_init() {
  WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/$1}
  mkdir -p "$WORK"
  cd "$WORK"
  local tool
  for tool in qemu-img go; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 1; }
  done
}

bench_build() {
  echo "building $1..." >&2
  (cd "$ROOT" && go build -o "$WORK/$1" "$2")
}

now() { date +%s.%N; }
