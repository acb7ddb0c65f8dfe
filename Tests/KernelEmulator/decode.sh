#!/bin/bash
# Checks the decode-step kernels (Kernels/mamba_decode_step.cu) on the CPU against a double-precision step (decode_check.cpp).
#   Tests/KernelEmulator/decode.sh              the configurations below
#   Tests/KernelEmulator/decode.sh -DMD_...     one configuration (every MD_ flag must be given)
set -euo pipefail
cd "$(dirname "$0")"
source ./emulate.sh
run() { check decode_check.cpp "$@"; }   # run "batch steps vocab seed" -D...
if [ $# -gt 0 ]; then run "3 3 37 1" "$@"; exit; fi
run "3 3 37 1"  -DMD_BF16=0 -DMD_DM=40 -DMD_DI=80 -DMD_N=7 -DMD_R=3 -DMD_KC=4 -DMD_CONV_BIAS=1 -DMD_BIAS=1
run "5 2 41 2"  -DMD_BF16=0 -DMD_DM=36 -DMD_DI=72 -DMD_N=16 -DMD_R=5 -DMD_KC=3 -DMD_CONV_BIAS=0 -DMD_BIAS=0
run "1 3 29 3"  -DMD_BF16=0 -DMD_DM=37 -DMD_DI=74 -DMD_N=1 -DMD_R=1 -DMD_KC=1 -DMD_CONV_BIAS=1 -DMD_BIAS=0
run "3 3 37 4"  -DMD_BF16=1 -DMD_DM=40 -DMD_DI=80 -DMD_N=7 -DMD_R=3 -DMD_KC=4 -DMD_CONV_BIAS=1 -DMD_BIAS=1
run "2 2 33 5"  -DMD_BF16=1 -DMD_DM=37 -DMD_DI=74 -DMD_N=33 -DMD_R=2 -DMD_KC=2 -DMD_CONV_BIAS=0 -DMD_BIAS=1
