# Sourced by run.sh and decode.sh: `check SOURCE.cpp "ARGS" -D...` builds a checker against one kernel configuration
# (the -D flags) and runs it with ARGS; a failed comparison exits non-zero, which stops the calling script (set -e).
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
check() {
  local source=$1 args=$2; shift 2
  g++ -std=c++20 -O1 -pthread -w "$@" "$source" -o "$out/check"
  echo "== $* ($args)"
  "$out/check" $args
}
