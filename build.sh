#!/usr/bin/env bash
# MambaML build entry point.
#   ./build.sh demo    build and run the main demo (forecasting on embedded data)
#   ./build.sh test    build and run the test suite; ends with "N passed, N failed, N skipped"
#   ./build.sh bench SUITE [args]   run a benchmark suite (see BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

say() { echo "build.sh: $*" >&2; }

# Debian 13 (trixie) main + non-free as an extra apt source. On Debian 12 it is a foreign release, pinned to priority 100 so
# that only the packages asked for with -t trixie come from it.
add_trixie_source() {
  cat > /etc/apt/sources.list.d/mambaml-trixie.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  [ "${VERSION_ID:-}" != 12 ] || printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/mambaml-trixie
  apt-get update -qq >/dev/null
}

# TorchSharp 0.107's native glue needs GLIBCXX_3.4.32 (GCC 13's libstdc++). Debian 12 ships GCC 12's.
# The verified fix: take libstdc++6 from Debian 13 (trixie), pinned low so nothing else moves unasked.
ensure_libstdcxx() {
  local lib
  # Every reader in a pipeline reads to the end: under pipefail a reader that quits early (awk exit, grep -q, head) lets
  # SIGPIPE kill the writer once its output outgrows the pipe buffer, and the script dies with 141.
  lib=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ && !found {print $NF; found=1}')
  [ -n "$lib" ] || lib=/usr/lib/x86_64-linux-gnu/libstdc++.so.6
  if [ -f "$lib" ] && grep -qa 'GLIBCXX_3\.4\.32' "$lib"; then return 0; fi
  local id="" ver=""
  if [ -r /etc/os-release ]; then . /etc/os-release; id=${ID:-}; ver=${VERSION_ID:-}; fi
  if [ "$id" != debian ] || [ "$ver" != 12 ] || [ "$(id -u)" != 0 ]; then
    say "TorchSharp needs libstdc++ with GLIBCXX_3.4.32 (GCC 13+); this system lacks it. Install a newer libstdc++6 (e.g. from your distribution's next release) or use Ubuntu 24.04+/Debian 13+, then rerun."
    exit 1
  fi
  say "installing libstdc++6 from Debian 13 (trixie), pinned to priority 100: TorchSharp's native library needs GLIBCXX_3.4.32, which Debian 12 lacks."
  add_trixie_source
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie libstdc++6 >/dev/null
}

# The CUDA scan kernels are compiled at run time by NVRTC. CI has no GPU, but with NVRTC alone the kernels still compile to PTX,
# so the tests check that every variant builds. Debian ships NVRTC 12 in trixie's non-free component: add it, pinned low.
ensure_nvrtc() {
  if ldconfig -p 2>/dev/null | grep -E 'libnvrtc\.so(\.[0-9]+)? ' >/dev/null; then return 0; fi
  local id="" ver=""
  if [ -r /etc/os-release ]; then . /etc/os-release; id=${ID:-}; ver=${VERSION_ID:-}; fi
  if [ "$id" != debian ] || [ "$(id -u)" != 0 ]; then
    say "NVRTC (libnvrtc) not found: the CUDA kernel compile test will be skipped. Install CUDA's NVRTC (e.g. Debian's libnvrtc12 from non-free) to run it."
    return 0
  fi
  say "installing libnvrtc12 from Debian 13 (trixie) non-free, pinned to priority 100: the tests compile the CUDA kernels with NVRTC."
  add_trixie_source
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie libnvrtc12 >/dev/null
}

case "${1:-}" in
  demo)
    ensure_libstdcxx
    dotnet build Samples/MambaML.Samples.Forecasting/MambaML.Samples.Forecasting.csproj -c Release -v q -nologo -clp:NoSummary
    shift; dotnet Samples/MambaML.Samples.Forecasting/bin/Release/net10.0/MambaML.Samples.Forecasting.dll "$@"
    ;;
  test)
    ensure_libstdcxx
    ensure_nvrtc
    dotnet build Tests/MambaML.Tests/MambaML.Tests.csproj -c Release -v q -nologo -clp:NoSummary
    shift
    results=$(mktemp -d)
    set +e
    dotnet Tests/MambaML.Tests/bin/Release/net10.0/MambaML.Tests.dll --results-directory "$results" --report-trx --report-trx-filename run.trx --progress off "$@"
    rc=$?
    set -e
    trx="$results/run.trx"
    if [ ! -f "$trx" ]; then say "test run wrote no results (exit $rc)"; exit $(( rc == 0 ? 1 : rc )); fi
    # The closing line CI reads, taken from the run's own TRX counters.
    counters=$(grep -o -m1 '<Counters [^>]*>' "$trx")
    get() { echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
    passed=$(get passed); failed=$(get failed); total=$(get total); executed=$(get executed)
    failed=$(( failed + $(get error) + $(get timeout) + $(get aborted) ))
    skipped=$(( total - executed ))
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
    ;;
  bench)
    ensure_libstdcxx
    dotnet build Tests/MambaML.Benchmarks/MambaML.Benchmarks.csproj -c Release -v q -nologo -clp:NoSummary
    shift; dotnet Tests/MambaML.Benchmarks/bin/Release/net10.0/MambaML.Benchmarks.dll "$@"
    ;;
  *)
    echo "usage: ./build.sh demo | test [mstest args] | bench SUITE [args]" >&2; exit 2 ;;
esac
