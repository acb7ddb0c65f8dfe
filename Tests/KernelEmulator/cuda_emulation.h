// Just enough of CUDA to run the selective-scan kernels on the CPU, one std::thread per CUDA thread, for checking their
// logic on machines without a GPU (see run.sh). Not a performance tool: blocks run one after another.
#pragma once
#include <barrier>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define SS_EMULATE 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __constant__
#define __shared__
#define __launch_bounds__(...)

struct dim3 { unsigned x = 0, y = 0, z = 0; };
struct float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline long long min(long long a, long long b) { return a < b ? a : b; }

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

// The block's shared memory (blocks run one at a time).
alignas(16) inline float4 smem4[1 << 16];

namespace emu {
inline std::unique_ptr<std::barrier<>> block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline std::vector<float> warp_slots;
inline std::mutex atomic_mutex;
}

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned, float v, int mask)
{
    const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    emu::warp_slots[threadIdx.x] = v;
    emu::warp_barriers[warp]->arrive_and_wait();
    const float r = emu::warp_slots[warp * 32 + (lane ^ (unsigned)mask)];
    emu::warp_barriers[warp]->arrive_and_wait();
    return r;
}

inline float atomicAdd(float* p, float v)
{
    std::lock_guard<std::mutex> lock(emu::atomic_mutex);
    const float old = *p;
    *p = old + v;
    return old;
}

// Runs kernel(params) over the grid, a block at a time, each block's threads in parallel.
template <typename P>
void emulate_launch(void (*kernel)(P), dim3 grid, unsigned threads, const P& params)
{
    blockDim = {threads, 1, 1};
    gridDim = grid;
    for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
            std::memset(smem4, 0xff, sizeof(smem4));   // NaN-poison shared memory: reads of unwritten slots show
            emu::block_barrier = std::make_unique<std::barrier<>>(threads);
            emu::warp_barriers.clear();
            for (unsigned w = 0; w < threads / 32; ++w) emu::warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
            emu::warp_slots.assign(threads, 0.f);
            std::vector<std::thread> pool;
            for (unsigned t = 0; t < threads; ++t)
                pool.emplace_back([=] { threadIdx = {t, 0, 0}; blockIdx = {bx, by, 0}; kernel(params); });
            for (auto& th : pool) th.join();
        }
}
