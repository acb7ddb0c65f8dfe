// bfloat16 <-> float conversion for the kernels (NVRTC has no cuda_bf16.h without the CUDA toolkit, so bf16 values travel as
// their raw 16 bits in an unsigned short). Included by selective_scan_common.cuh and mamba_decode_step.cu.
#pragma once

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(unsigned short x) { return __uint_as_float(((unsigned)x) << 16); }

__device__ __forceinline__ void from_f(float v, float& out) { out = v; }
__device__ __forceinline__ void from_f(float v, unsigned short& out)
{
    unsigned u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) { out = (unsigned short)((u >> 16) | 0x40u); return; }   // NaN stays a (quiet) NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                                            // round to nearest even
    out = (unsigned short)(u >> 16);
}
