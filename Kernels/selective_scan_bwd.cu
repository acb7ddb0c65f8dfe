// Selective scan, backward: gradients of (out, last state) with respect to every input.
//
// With a_t = exp(delta'_t A) and g_t = dLoss/dh_t, the adjoint runs backwards in time:
//   g_t = C_t dy_t + a_{t+1} g_{t+1}   (g_{L-1} also receives the last state's gradient; dh0 = a_0 g_0)
//   dB_t += g_t delta'_t u_t      dC_t += dy_t h_t      dA += g_t a_t h_{t-1} delta'_t
//   du_t = delta'_t sum_n g_t B_t + D dy_t      d delta'_t = u_t sum_n g_t B_t + sum_n g_t a_t h_{t-1} A
// where dy = dout * silu(z) and dz = dout * (C.h + D u) * silu'(z).
//
// Chunks of T steps are visited last to first. For each chunk: stage delta', u, B, C; (F) restart the recurrence from
// the state the forward kernel saved at the chunk start, recording the state every S steps (and y, for dz); compute dy,
// dz; (R) visit the S-step sub-chunks last to first: re-run the recurrence over the sub-chunk from its recorded state,
// keeping a_t and h_{t-1} in registers, then walk it backwards with the adjoint. Per-(channel, step) sums over states
// are reduced across the channel's K lanes by the transposing butterfly; dB_t and dC_t, which sum over channels, are
// reduced over the block's CB channels in shared memory and added to global memory with one atomic per (state, step)
// per block, instead of one per channel. dA, and dB/dC for fixed (dim, N) matrices, accumulate in registers.
//
// Extra configuration (-D): SS_S (sub-chunk length, a multiple of 4 dividing T), SS_HAS_DLAST (the last state has a
// gradient). The forward kernel must have saved states with SS_SAVE_EVERY == T.
#include "selective_scan_common.cuh"

#if !defined(SS_S) || !defined(SS_HAS_DLAST)
#error "selective_scan_bwd needs SS_S and SS_HAS_DLAST"
#endif

using namespace ss;

static_assert(Q == 1, "the backward kernel runs one channel per thread");
constexpr int S = SS_S;
static_assert(S % G == 0 && T % S == 0, "S must be a multiple of G dividing T");

struct BwdParams {
    const in_t* u;              // (batch, dim, len)
    const in_t* delta;          // (batch, dim, len)
    const float* A;             // (dim, N)
    const void* B;              // in_t (batch, N, len) if SS_VAR_B, else float (dim, N)
    const void* C;              // likewise
    const float* D;             // (dim)
    const in_t* z;              // (batch, dim, len)
    const float* delta_bias;    // (dim)
    const in_t* dout;           // (batch, dim, len)
    const float* dlast;         // (batch, dim, N)
    const float* saved_states;  // (batch, dim, saved_per_row, N): the state at each chunk start
    in_t* du;                   // (batch, dim, len)
    in_t* ddelta;               // (batch, dim, len)
    in_t* dz;                   // (batch, dim, len)
    float* dA;                  // (dim, N), accumulated atomically (zero-initialised)
    float* dB;                  // (batch, N, len) or (dim, N), accumulated atomically
    float* dC;                  // likewise
    float* dD;                  // (dim), accumulated atomically
    float* ddelta_bias;         // (dim), accumulated atomically
    float* dh0;                 // (batch, dim, N), or null
    long long batch, dim, len, saved_per_row;
};

// Shared memory, in floats.
constexpr int NRED = SS_VAR_B + SS_VAR_C;                            // channel-reduced gradients per (step, state)
constexpr int BWD_SMEM_FLOATS = 5 * CB * TP                          // delta', u, dy, y/sum(gB), sum(g a h A)
                              + NRED * T * SB                        // B, C
                              + (T / S) * CB * NPAD                  // recorded states
                              + NRED * S * CB * NPAD;                // dB, dC per (step, channel, state) of a sub-chunk
extern "C" __constant__ unsigned selective_scan_bwd_smem_bytes = BWD_SMEM_FLOATS * 4;

// Per-(channel, step) passes: thread tid always gets the same channels, so it keeps per-channel sums in registers.
constexpr int ROW_GROUP = (T / V) < 32 ? (T / V) : 32;               // consecutive lanes sharing a channel

#if SS_VAR_B || SS_VAR_C
// Channel reduction of dB/dC: one unit = (gradient, step, 4 states); P threads per unit split the channels.
constexpr int RED_W = NPAD < 4 ? NPAD : 4;
constexpr int RED_UNITS = NRED * S * (NPAD / RED_W);
constexpr int RED_P_MAX = CB < 32 ? CB : 32;
constexpr int RED_P = RED_UNITS >= THREADS ? 1 : (THREADS / RED_UNITS < RED_P_MAX ? THREADS / RED_UNITS : RED_P_MAX);
constexpr int RED_ITERS = (RED_UNITS * RED_P + THREADS - 1) / THREADS;
#endif

__device__ __forceinline__ void atomic_add_f(float* p, float v) { atomicAdd(p, v); }

extern "C" __global__ void __launch_bounds__(THREADS) selective_scan_bwd(const BwdParams p)
{
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    float* const dt_s = smem;               // [CB][TP] delta'
    float* const u_s = dt_s + CB * TP;      // [CB][TP] u
    float* const dy_s = u_s + CB * TP;      // [CB][TP] dy
    float* const gb_s = dy_s + CB * TP;     // [CB][TP] y (pass F), then sum_n g B (pass R)
    float* const gh_s = gb_s + CB * TP;     // [CB][TP] sum_n g a h_{t-1} A
    float* const B_s = gh_s + CB * TP;      // [T][SB] (input-dependent B)
    float* const C_s = B_s + SS_VAR_B * T * SB;   // [T][SB] (input-dependent C)
    float* const ck_s = C_s + SS_VAR_C * T * SB;   // [T/S][CB][NPAD] state before each sub-chunk
#if SS_VAR_B
    float* const dB_s = ck_s + (T / S) * CB * NPAD;   // [S][CB][NPAD]
#endif
#if SS_VAR_C
    float* const dC_s = ck_s + (T / S + SS_VAR_B * S) * CB * NPAD;   // [S][CB][NPAD]
#endif

    const int tid = threadIdx.x, c = tid / K, j = tid % K;
    const long long b = blockIdx.y, d0 = (long long)blockIdx.x * CB, d = d0 + c;
    const long long dim = p.dim, len = p.len;
    const bool dvalid = d < dim;
    const long long row = b * dim + d;

    zero_state_padding(B_s, C_s);

    float A2[NP], An[NP], gc[NP], dA[NP], Bf[NP], Cf[NP];
#if !SS_VAR_B
    float dBf[NP];
#endif
#if !SS_VAR_C
    float dCf[NP];
#endif
#pragma unroll
    for (int k = 0; k < NP; ++k) {
        const int n = j * NP + k;
        const bool valid = dvalid && n < N;
        An[k] = valid ? p.A[d * N + n] : 0.f;
        A2[k] = An[k] * LOG2E;
        dA[k] = 0.f;
#if SS_HAS_DLAST
        gc[k] = valid ? p.dlast[row * N + n] : 0.f;
#else
        gc[k] = 0.f;
#endif
        Bf[k] = !SS_VAR_B && valid ? static_cast<const float*>(p.B)[d * N + n] : 0.f;
        Cf[k] = !SS_VAR_C && valid ? static_cast<const float*>(p.C)[d * N + n] : 0.f;
#if !SS_VAR_B
        dBf[k] = 0.f;
#endif
#if !SS_VAR_C
        dCf[k] = 0.f;
#endif
    }
    float dD_acc[ROW_ITERS], dbias_acc[ROW_ITERS];
#pragma unroll
    for (int r = 0; r < ROW_ITERS; ++r) { dD_acc[r] = 0.f; dbias_acc[r] = 0.f; }

    // The next chunk's (the previous in time) inputs are loaded into registers while this one is processed.
    const long long nchunks = (len + T - 1) / T;
    ChunkInputs next;
    next.load(p.u, p.delta, p.B, p.C, b, dim, len, d0, (nchunks - 1) * T);
    float bias[ROW_ITERS];
    load_row_bias(p.delta_bias, dim, d0, bias);

    for (long long chunk = nchunks - 1; chunk >= 0; --chunk) {
        const long long t0 = chunk * T;
        const int clen = (int)min((long long)T, len - t0);
        __syncthreads();

        // Stage delta', u per (channel, step) and B, C per (step, state); start loading dout, z and the next chunk.
        stage_chunk<false, true>(next, bias, dt_s, nullptr, u_s, B_s, C_s);
        RawVec dout_cur[ROW_ITERS];
        load_rows(p.dout, b, dim, len, d0, t0, dout_cur);
#if SS_HAS_Z
        RawVec z_cur[ROW_ITERS];
        load_rows(p.z, b, dim, len, d0, t0, z_cur);
#endif
        if (chunk > 0) next.load(p.u, p.delta, p.B, p.C, b, dim, len, d0, t0 - T);
        __syncthreads();

        // (F) Re-run the chunk from its saved start state: record the state every S steps; y for dz.
        {
            float h[NP];
            const float* saved = p.saved_states + (row * p.saved_per_row + chunk) * N;
#pragma unroll
            for (int k = 0; k < NP; ++k) h[k] = dvalid && j * NP + k < N ? saved[j * NP + k] : 0.f;
            for (int tg = 0; tg < clen; tg += G) {
                if (tg % S == 0) sts(ck_s + ((tg / S) * CB + c) * NPAD + j * NP, h);
                float dtg[G], ug[G];
                lds(dt_s + c * TP + tg, dtg);
                lds(u_s + c * TP + tg, ug);
#if SS_HAS_Z
                float yv[G];
#endif
                auto steps = [&](auto whole) {
#pragma unroll
                    for (int i = 0; i < G; ++i) {
#if SS_HAS_Z
                        yv[i] = 0.f;
#endif
                        if (decltype(whole)::value || tg + i < clen) {
                            float Bv[NP];
                            step_states<SS_VAR_B>(B_s, tg + i, j, Bf, Bv);
                            const float dtu = dtg[i] * ug[i];
#pragma unroll
                            for (int k = 0; k < NP; ++k) h[k] = fmaf(fast_exp2(dtg[i] * A2[k]), h[k], dtu * Bv[k]);
#if SS_HAS_Z
                            float Cv[NP];
                            step_states<SS_VAR_C>(C_s, tg + i, j, Cf, Cv);
#pragma unroll
                            for (int k = 0; k < NP; ++k) yv[i] = fmaf(h[k], Cv[k], yv[i]);
#endif
                        }
                    }
                };
                if (tg + G <= clen) steps(Flag<true>{}); else steps(Flag<false>{});
#if SS_HAS_Z
                reduce_store(yv, j, gb_s + c * TP + tg);
#endif
            }
        }
        __syncthreads();

        // dy = dout * silu(z); dz = dout * (y + D u) * silu'(z); dD += dy u.
        for_each_row_vec([&](int r, int cc, int tt) {
            float dyv[V], uv[V];
            unpack(dout_cur[r], dyv);   // zero outside the tensor
            lds(u_s + cc * TP + tt, uv);
#if SS_HAS_Z
            const long long dd = d0 + cc;
#if SS_HAS_D
            const float Dv = dd < dim ? p.D[dd] : 0.f;
#else
            const float Dv = 0.f;
#endif
            float zv[V], yv[V], dzv[V];
            unpack(z_cur[r], zv);
            lds(gb_s + cc * TP + tt, yv);
#pragma unroll
            for (int i = 0; i < V; ++i) {
                const float s = sigmoid(zv[i]);
                const float y = fmaf(Dv, uv[i], yv[i]);
                dzv[i] = dyv[i] * y * s * (1.f + zv[i] * (1.f - s));
                dyv[i] *= zv[i] * s;
            }
            if (dd < dim && t0 + tt < len) store_vec(p.dz + (b * dim + dd) * len + t0 + tt, dzv);
#endif
#pragma unroll
            for (int i = 0; i < V; ++i) dD_acc[r] = fmaf(dyv[i], uv[i], dD_acc[r]);
            sts(dy_s + cc * TP + tt, dyv);
        });
        __syncthreads();

        // (R) Sub-chunks last to first: re-run forward keeping a_t, h_{t-1}; then the adjoint backwards.
        for (int sub = (clen - 1) / S; sub >= 0; --sub) {
            const int ts = sub * S;
            // A whole sub-chunk runs without bounds checks.
            auto sub_chunk = [&](auto whole) {
                float h[NP], a[S][NP], hp[S][NP];
                lds(ck_s + (sub * CB + c) * NPAD + j * NP, h);
#pragma unroll
                for (int i = 0; i < S; ++i) {
                    const int t = ts + i;
#pragma unroll
                    for (int k = 0; k < NP; ++k) hp[i][k] = h[k];
                    if (decltype(whole)::value || t < clen) {
                        float Bv[NP];
                        step_states<SS_VAR_B>(B_s, t, j, Bf, Bv);
                        const float dt = dt_s[c * TP + t], dtu = dt * u_s[c * TP + t];
#pragma unroll
                        for (int k = 0; k < NP; ++k) {
                            a[i][k] = fast_exp2(dt * A2[k]);
                            h[k] = fmaf(a[i][k], h[k], dtu * Bv[k]);
                        }
                    } else {
#pragma unroll
                        for (int k = 0; k < NP; ++k) a[i][k] = 1.f;
                    }
                }
#pragma unroll
                for (int grp = S / G - 1; grp >= 0; --grp) {
                    float gbv[G], ghv[G];
#pragma unroll
                    for (int ii = G - 1; ii >= 0; --ii) {
                        const int i = grp * G + ii, t = ts + i;
                        gbv[ii] = 0.f;
                        ghv[ii] = 0.f;
                        if (decltype(whole)::value || t < clen) {
                            float Bv[NP], Cv[NP];
                            step_states<SS_VAR_B>(B_s, t, j, Bf, Bv);
                            step_states<SS_VAR_C>(C_s, t, j, Cf, Cv);
                            const float dt = dt_s[c * TP + t], dy = dy_s[c * TP + t];
                            const float dtu = dt * u_s[c * TP + t];
                            float dBv[NP], dCv[NP];
#pragma unroll
                            for (int k = 0; k < NP; ++k) {
                                const float ht = i == S - 1 ? h[k] : hp[i + 1 < S ? i + 1 : i][k];   // h_t
                                const float g = fmaf(dy, Cv[k], gc[k]);
                                dCv[k] = dy * ht;
                                dBv[k] = g * dtu;
                                gbv[ii] = fmaf(g, Bv[k], gbv[ii]);
                                const float q = g * a[i][k] * hp[i][k];
                                ghv[ii] = fmaf(q, An[k], ghv[ii]);
                                dA[k] = fmaf(q, dt, dA[k]);
                                gc[k] = a[i][k] * g;
                            }
#if SS_VAR_B
                            sts(dB_s + (i * CB + c) * NPAD + j * NP, dBv);
#else
#pragma unroll
                            for (int k = 0; k < NP; ++k) dBf[k] += dBv[k];
#endif
#if SS_VAR_C
                            sts(dC_s + (i * CB + c) * NPAD + j * NP, dCv);
#else
#pragma unroll
                            for (int k = 0; k < NP; ++k) dCf[k] += dCv[k];
#endif
                        }
                    }
                    reduce_store(gbv, j, gb_s + c * TP + ts + grp * G);
                    reduce_store(ghv, j, gh_s + c * TP + ts + grp * G);
                }
            };
            if (ts + S <= clen) sub_chunk(Flag<true>{}); else sub_chunk(Flag<false>{});
#if SS_VAR_B || SS_VAR_C
            __syncthreads();
            // Sum dB_t, dC_t over the block's channels; one atomic per (state, step) per block.
#pragma unroll
            for (int it = 0; it < RED_ITERS; ++it) {
                const int slot = tid + it * THREADS;
                const int unit = slot / RED_P, part = slot % RED_P;
                const bool active = unit < RED_UNITS;
                const int rest = active ? unit % (S * (NPAD / RED_W)) : 0;
                const int i = rest / (NPAD / RED_W), n0 = (rest % (NPAD / RED_W)) * RED_W;
#if SS_VAR_B && SS_VAR_C
                const bool first = !active || unit < S * (NPAD / RED_W);   // the first half of the units reduce dB
                const float* src = first ? dB_s : dC_s;
                float* dst = first ? p.dB : p.dC;
#elif SS_VAR_B
                const float* src = dB_s;
                float* dst = p.dB;
#else
                const float* src = dC_s;
                float* dst = p.dC;
#endif
                float sum[RED_W];
#pragma unroll
                for (int w = 0; w < RED_W; ++w) sum[w] = 0.f;
                if (active) {
                    for (int cc = part; cc < CB; cc += RED_P) {
                        float v[RED_W];
                        lds(src + (i * CB + cc) * NPAD + n0, v);
#pragma unroll
                        for (int w = 0; w < RED_W; ++w) sum[w] += v[w];
                    }
                }
#pragma unroll
                for (int w = 0; w < RED_W; ++w) sum[w] = group_sum<RED_P>(sum[w]);
                const long long t = t0 + ts + i;
                if (active && ts + i < clen) {
#pragma unroll
                    for (int w = 0; w < RED_W; ++w)
                        if (w % RED_P == part && n0 + w < N) atomic_add_f(dst + (b * N + n0 + w) * len + t, sum[w]);
                }
            }
#endif
            __syncthreads();
        }

        // du = delta' sum(gB) + D dy;  d delta = (u sum(gB) + sum(g a h A)) * softplus'.
        for_each_row_vec([&](int r, int cc, int tt) {
            const long long dd = d0 + cc;
            if (dd >= dim || t0 + tt >= len) return;
            const long long off = (b * dim + dd) * len + t0 + tt;
            float dtv[V], uv[V], dyv[V], gbv[V], ghv[V], duv[V], ddv[V];
            lds(dt_s + cc * TP + tt, dtv);
            lds(u_s + cc * TP + tt, uv);
            lds(dy_s + cc * TP + tt, dyv);
            lds(gb_s + cc * TP + tt, gbv);
            lds(gh_s + cc * TP + tt, ghv);
#if SS_HAS_D
            const float Dv = p.D[dd];
#else
            const float Dv = 0.f;
#endif
#pragma unroll
            for (int i = 0; i < V; ++i) {
                duv[i] = fmaf(dtv[i], gbv[i], Dv * dyv[i]);
                ddv[i] = fmaf(uv[i], gbv[i], ghv[i]);
#if SS_SOFTPLUS
                // softplus'(x) = sigmoid(x) = 1 - exp(-softplus(x)); exactly 1 above the threshold
                ddv[i] *= dtv[i] > 20.f ? 1.f : -expm1f(-dtv[i]);
#endif
                dbias_acc[r] += ddv[i];
            }
            store_vec(p.du + off, duv);
            store_vec(p.ddelta + off, ddv);
        });
    }

    // Per-channel and per-(channel, state) parameter gradients.
#pragma unroll
    for (int r = 0; r < ROW_ITERS; ++r) {
        const int e = tid + r * THREADS;
        const long long dd = d0 + e / (T / V);
        const float dDs = group_sum<ROW_GROUP>(dD_acc[r]);
        const float dbs = group_sum<ROW_GROUP>(dbias_acc[r]);
        if (e < ROW_VECS && e % ROW_GROUP == 0 && dd < dim) {
#if SS_HAS_D
            atomic_add_f(p.dD + dd, dDs);
#endif
#if SS_HAS_BIAS
            atomic_add_f(p.ddelta_bias + dd, dbs);
#endif
        }
    }
    if (dvalid) {
#pragma unroll
        for (int k = 0; k < NP; ++k) {
            const int n = j * NP + k;
            if (n >= N) continue;
            atomic_add_f(p.dA + d * N + n, dA[k]);
#if !SS_VAR_B
            atomic_add_f(p.dB + d * N + n, dBf[k]);
#endif
#if !SS_VAR_C
            atomic_add_f(p.dC + d * N + n, dCf[k]);
#endif
            if (p.dh0 != nullptr) p.dh0[row * N + n] = gc[k];
        }
    }
}
