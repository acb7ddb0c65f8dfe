#!/bin/bash
# Checks the CUDA selective-scan kernels on the CPU (no GPU needed): builds scan_check.cpp for several kernel
# configurations and compares each with a double-precision reference and its finite-difference gradients.
#   Tests/KernelEmulator/run.sh            all configurations below
#   Tests/KernelEmulator/run.sh -DSS_N=... one configuration (every flag must be given)
set -euo pipefail
cd "$(dirname "$0")"
source ./emulate.sh
run() { check scan_check.cpp "$@"; }   # run "B D L seed" -D...
flags() { echo "-DSS_VAR_B=$1 -DSS_VAR_C=$2 -DSS_HAS_D=$3 -DSS_HAS_Z=$4 -DSS_HAS_BIAS=$5 -DSS_SOFTPLUS=$6 -DSS_HAS_H0=$7 -DSS_HAS_DLAST=$8"; }
if [ $# -gt 0 ]; then run "2 5 37 1" "$@"; exit; fi
# shape N NP K CB T S [Q [G]]: Q > 1 (channels per thread) is a forward-only layout, so those runs check the forward only;
# G: steps per lane-reduction group
shape() { echo "-DSS_N=$1 -DSS_NP=$2 -DSS_K=$3 -DSS_CB=$4 -DSS_T=$5 -DSS_S=$6 -DSS_SAVE_EVERY=$5 -DSS_Q=${7:-1} -DSS_G=${8:-4}"; }
run "2 5 37 1"  -DSS_BF16=0 -DSS_VEC=0 $(shape 16 4 4 8 16 8)  $(flags 1 1 1 1 1 1 1 1)
run "2 5 40 2"  -DSS_BF16=0 -DSS_VEC=1 $(shape 16 4 4 8 16 8)  $(flags 1 1 1 1 1 1 1 1)
run "2 5 37 3"  -DSS_BF16=0 -DSS_VEC=0 $(shape 16 4 4 8 16 8)  $(flags 0 0 0 0 0 0 0 0)
run "1 3 21 4"  -DSS_BF16=0 -DSS_VEC=0 $(shape 7 4 2 16 16 8)  $(flags 1 0 1 0 1 1 0 1)
run "2 3 19 5"  -DSS_BF16=0 -DSS_VEC=0 $(shape 1 1 1 32 16 4)  $(flags 0 1 0 1 0 1 1 0)
run "1 2 33 6"  -DSS_BF16=0 -DSS_VEC=0 $(shape 64 4 16 2 16 8) $(flags 1 1 1 1 1 1 1 1)
run "2 9 48 7"  -DSS_BF16=1 -DSS_VEC=1 $(shape 16 4 4 8 16 8)  $(flags 1 1 1 1 1 1 1 1)
run "2 5 37 8"  -DSS_BF16=1 -DSS_VEC=0 $(shape 16 2 8 4 16 8)  $(flags 1 1 1 1 1 0 1 1)
run "1 33 132 9" -DSS_BF16=0 -DSS_VEC=1 $(shape 16 4 4 32 64 8) $(flags 1 1 1 1 1 1 1 1)
run "1 33 70 10" -DSS_BF16=1 -DSS_VEC=0 $(shape 16 4 4 32 64 8) $(flags 0 1 1 1 0 1 0 1)
# few lanes per channel, several channels per thread
run "2 37 40 11" -DSS_BF16=0 -DSS_VEC=1 $(shape 16 16 1 32 16 8)   $(flags 1 1 1 1 1 1 1 1)
run "1 37 37 12" -DSS_BF16=0 -DSS_VEC=0 $(shape 16 8 2 32 16 8 2) $(flags 1 1 1 1 1 1 1 1)
run "2 21 48 13" -DSS_BF16=1 -DSS_VEC=1 $(shape 16 4 4 16 16 8 2) $(flags 1 1 1 1 1 1 1 1)
run "1 70 45 14" -DSS_BF16=0 -DSS_VEC=0 $(shape 7 8 1 64 16 8 2)  $(flags 0 1 0 1 1 1 1 0)
run "2 9 35 15"  -DSS_BF16=0 -DSS_VEC=0 $(shape 16 8 2 64 32 8 4) $(flags 1 0 1 0 0 0 0 0)
# eight steps per lane-reduction group
run "2 11 45 16" -DSS_BF16=0 -DSS_VEC=0 $(shape 16 2 8 4 32 8 1 8)  $(flags 1 1 1 1 1 1 1 1)
run "1 21 64 17" -DSS_BF16=1 -DSS_VEC=1 $(shape 16 4 4 16 32 16 1 8) $(flags 1 1 1 1 1 1 1 1)
run "2 9 41 18"  -DSS_BF16=0 -DSS_VEC=0 $(shape 16 1 16 4 16 8 1 8) $(flags 1 0 1 1 1 1 1 1)
run "1 37 52 19" -DSS_BF16=0 -DSS_VEC=1 $(shape 16 2 8 32 32 8 2 8) $(flags 1 1 1 1 1 1 1 1)
run "1 5 29 20"  -DSS_BF16=0 -DSS_VEC=0 $(shape 3 2 2 16 16 8 1 8)  $(flags 1 1 0 0 1 1 0 1)
