#!/bin/bash
# On the GPU machine: runs a program bundled by ../shared/gpu/pack.sh under NVIDIA compute-sanitizer, checking only the
# kernels of Kernels/ (memcheck: out-of-bounds and misaligned accesses; racecheck: shared-memory races), not libtorch's.
#   bash Tests/gpu-sanitize.sh memcheck|racecheck NAME PROGRAM.dll [args...]
# SANITIZE_KERNELS (a regular expression, default "selective_scan|decode_") narrows the kernels checked.
# Sets up the environment as .gpu/run.sh does (its .NET runtime, PyTorch's CUDA libtorch).
set -euo pipefail
tool=${1:?usage: gpu-sanitize.sh TOOL NAME PROGRAM.dll [args]}; name=${2:?}; dll=${3:?}; shift 3
gpu=$(cd "$(dirname "$0")/../.gpu" && pwd)
if [ ! -x /tmp/dotnet-rt/dotnet/dotnet ]; then mkdir -p /tmp/dotnet-rt && tar xJf "$gpu/dotnet-runtime.tar.xz" -C /tmp/dotnet-rt; fi
DN=$(dirname "$(find /tmp/dotnet-rt -maxdepth 2 -name dotnet -type f -print -quit)")
export DOTNET_ROOT=$DN DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
TL=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
export LD_LIBRARY_PATH="$TL:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" LIBTORCH_DIR="$TL"
# Like run.sh: the bundle's archive if present, else a folder .gpu/NAME unpacked beforehand (for concurrent runs).
if [ -f "$gpu/$name.tar.xz" ]; then rm -rf "/tmp/gpu-app/$name"; mkdir -p /tmp/gpu-app && tar xJf "$gpu/$name.tar.xz" -C /tmp/gpu-app; app=/tmp/gpu-app/$name; else app=$gpu/$name; fi
export LD_LIBRARY_PATH="$app/runtimes/linux-x64/native:$LD_LIBRARY_PATH"
cd "$app"
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
exec "$sanitizer" --tool "$tool" --kernel-regex kns="${SANITIZE_KERNELS:-selective_scan|decode_}" --error-exitcode 99 "$DN/dotnet" "$dll" "$@"
