// Runs the decode-step kernels (Kernels/mamba_decode_step.cu) on the CPU for a few steps of a random model and compares
// logits, states and the greedy token with a double-precision step written from MambaMixer.Step's definition.
// Build and run: see decode.sh (sizes and flags are -D definitions, as NVRTC gets them).
#include "cuda_emulation.h"
#include <cstdio>
#include <random>
#include <vector>

inline uint4 __ldg(const uint4* p) { return *p; }
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
namespace emu { inline std::vector<long long> warp_slots64(1024); }
inline long long __shfl_xor_sync(unsigned, long long v, int mask)
{
    const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    emu::warp_slots64[threadIdx.x] = v;
    emu::warp_barriers[warp]->arrive_and_wait();
    const long long r = emu::warp_slots64[warp * 32 + (lane ^ (unsigned)mask)];
    emu::warp_barriers[warp]->arrive_and_wait();
    return r;
}

#include "../../Kernels/mamba_decode_step.cu"

using md::w_t;
using std::vector;

static w_t W(double v) { w_t o; from_f((float)v, o); return o; }
static double F(w_t v) { return to_f(v); }

struct Layer { vector<w_t> norm, in_w, in_b, conv_w, conv_b, xproj, dt_w, dt_b, a_log, d, out_w, out_b; };

int main(int argc, char** argv)
{
    const int batch = argc > 1 ? atoi(argv[1]) : 3, steps = argc > 2 ? atoi(argv[2]) : 3, layers = 2;
    const long long vocab = argc > 3 ? atoll(argv[3]) : 37;
    std::mt19937 rng(argc > 4 ? atoi(argv[4]) : 1);
    auto uni = [&](double s) { return std::uniform_real_distribution<double>(-s, s)(rng); };
    auto fill = [&](size_t n, double s, double offset = 0) { vector<w_t> v(n); for (auto& x : v) x = W(offset + uni(s)); return v; };
    vector<w_t> emb = fill((size_t)vocab * DM, 1.0), norm_f = fill(DM, 0.2, 1.0);
    vector<Layer> L(layers);
    for (auto& l : L) {
        l.norm = fill(DM, 0.2, 1.0); l.in_w = fill(2 * DI * DM, 1 / std::sqrt(DM)); l.in_b = fill(2 * DI, 0.1);
        l.conv_w = fill(DI * KC, 1 / std::sqrt(KC)); l.conv_b = fill(DI, 0.3); l.xproj = fill(XD * DI, 1 / std::sqrt(DI));
        l.dt_w = fill(DI * R, 1 / std::sqrt(R)); l.dt_b = fill(DI, 1.0, -3.0); l.d = fill(DI, 0.5, 1.0);
        l.out_w = fill(DM * DI, 1 / std::sqrt(DI)); l.out_b = fill(DM, 0.1);
        l.a_log.resize(DI * N); for (int d = 0; d < DI; ++d) for (int n = 0; n < N; ++n) l.a_log[d * N + n] = W(std::log(n + 1.0) + uni(0.1));
    }
    // State: the kernels' (updated in place) and the reference's, from the same random start.
    vector<vector<w_t>> conv(layers, fill((size_t)batch * DI * (KC - 1), 1.0));
    vector<vector<float>> ssm(layers, vector<float>((size_t)batch * DI * N));
    for (auto& s : ssm) for (auto& x : s) x = (float)uni(1.0);
    vector<vector<double>> conv_ref(layers), ssm_ref(layers);
    for (int l = 0; l < layers; ++l) { for (auto x : conv[l]) conv_ref[l].push_back(F(x)); for (auto x : ssm[l]) ssm_ref[l].push_back(x); }

    vector<float> scratch((size_t)batch * (DM + 4 * DI + XD), std::nanf(""));
    float *resid = scratch.data(), *xz = resid + batch * DM, *xc = xz + batch * 2 * DI, *xdbl = xc + batch * DI, *y = xdbl + batch * XD;
    vector<long long> tokens(batch), generated((size_t)batch * steps, -1);
    vector<w_t> logits((size_t)batch * vocab);
    for (int b = 0; b < batch; ++b) tokens[b] = rng() % vocab;
    const float eps = 1e-5f;
    double worst_logit = 0, worst_state = 0;
    bool ok = true;
    const int G = md::G;
    for (int t = 0; t < steps; ++t) {
        // ---- reference, in double, from the tokens the kernels will read
        vector<double> h((size_t)batch * DM), lg((size_t)batch * vocab);
        for (int b = 0; b < batch; ++b) for (int c = 0; c < DM; ++c) h[b * DM + c] = F(emb[tokens[b] * DM + c]);
        auto rms = [&](const vector<double>& x, int b, const vector<w_t>& w) {
            double s = 0; for (int c = 0; c < DM; ++c) s += x[b * DM + c] * x[b * DM + c];
            double inv = 1 / std::sqrt(s / DM + eps); vector<double> o(DM);
            for (int c = 0; c < DM; ++c) o[c] = x[b * DM + c] * inv * F(w[c]);
            return o;
        };
        for (int l = 0; l < layers; ++l) {
            auto& p = L[l];
            for (int b = 0; b < batch; ++b) {
                auto u = rms(h, b, p.norm);
                vector<double> xzr(2 * DI), xcr(DI), xd(XD), yr(DI);
                for (int r = 0; r < 2 * DI; ++r) { double s = MD_BIAS ? F(p.in_b[r]) : 0; for (int c = 0; c < DM; ++c) s += F(p.in_w[r * DM + c]) * u[c]; xzr[r] = s; }
                for (int d = 0; d < DI; ++d) {
                    double* win = conv_ref[l].data() + ((size_t)b * DI + d) * (KC - 1);
                    double s = MD_CONV_BIAS ? F(p.conv_b[d]) : 0;
                    for (int k = 0; k < KC - 1; ++k) s += win[k] * F(p.conv_w[d * KC + k]);
                    s += xzr[d] * F(p.conv_w[d * KC + KC - 1]);
                    xcr[d] = s / (1 + std::exp(-s));
                    for (int k = 0; k + 1 < KC - 1; ++k) win[k] = win[k + 1];
                    if (KC > 1) win[KC - 2] = F(W(xzr[d]));   // the conv state holds x in the weights' dtype
                }
                for (int r = 0; r < XD; ++r) { double s = 0; for (int d = 0; d < DI; ++d) s += F(p.xproj[r * DI + d]) * xcr[d]; xd[r] = s; }
                for (int d = 0; d < DI; ++d) {
                    double dt = F(p.dt_b[d]); for (int r = 0; r < R; ++r) dt += F(p.dt_w[d * R + r]) * xd[r];
                    dt = dt > 20 ? dt : std::log1p(std::exp(dt));
                    double acc = 0;
                    for (int n = 0; n < N; ++n) {
                        double& hs = ssm_ref[l][((size_t)b * DI + d) * N + n];
                        hs = std::exp(-dt * std::exp(F(p.a_log[d * N + n]))) * hs + dt * xcr[d] * xd[R + n];
                        acc += hs * xd[R + N + n];
                    }
                    double z = xzr[DI + d];
                    yr[d] = (acc + F(p.d[d]) * xcr[d]) * z / (1 + std::exp(-z));
                }
                for (int r = 0; r < DM; ++r) { double s = MD_BIAS ? F(p.out_b[r]) : 0; for (int d = 0; d < DI; ++d) s += F(p.out_w[r * DI + d]) * yr[d]; h[b * DM + r] += s; }
            }
        }
        for (int b = 0; b < batch; ++b) {
            auto u = rms(h, b, norm_f);
            for (long long v = 0; v < vocab; ++v) { double s = 0; for (int c = 0; c < DM; ++c) s += F(emb[v * DM + c]) * u[c]; lg[b * vocab + v] = s; }
        }
        // ---- the kernels, launched as CudaDecodeStep launches them, states in place
        for (int l = 0; l < layers; ++l) {
            auto& p = L[l];
            md::Args a{};
            a.tokens = l == 0 ? tokens.data() : nullptr; a.embedding = emb.data(); a.resid = resid; a.norm_w = p.norm.data();
            a.in_w = p.in_w.data(); a.in_b = MD_BIAS ? p.in_b.data() : nullptr; a.xz = xz; a.conv_w = p.conv_w.data();
            a.conv_b = MD_CONV_BIAS ? p.conv_b.data() : nullptr; a.conv_in = conv[l].data(); a.conv_out = conv[l].data();
            a.xproj_w = p.xproj.data(); a.xc = xc; a.xdbl = xdbl; a.dt_w = p.dt_w.data(); a.dt_b = p.dt_b.data(); a.a_log = p.a_log.data();
            a.d_skip = p.d.data(); a.ssm_in = ssm[l].data(); a.ssm_out = ssm[l].data(); a.y = y; a.out_w = p.out_w.data();
            a.out_b = MD_BIAS ? p.out_b.data() : nullptr; a.batch = batch; a.vocab = vocab; a.eps = eps;
            emulate_launch(decode_in_proj, dim3{(2 * DI + 7) / 8, 1, 1}, 256, a);
            emulate_launch(decode_x_proj, dim3{(XD + 3) / 4, 1, 1}, 128, a);
            emulate_launch(decode_ssm, dim3{(unsigned)((DI + 256 / G - 1) / (256 / G)), 1, 1}, 256, a);
            emulate_launch(decode_out_proj, dim3{(DM + 7) / 8, 1, 1}, 256, a);
        }
        md::Args head{};
        head.embedding = emb.data(); head.resid = resid; head.norm_w = norm_f.data(); head.logits = logits.data();
        head.next_tokens = tokens.data(); head.generated = generated.data(); head.generated_stride = steps; head.generated_column = t;
        head.batch = batch; head.vocab = vocab; head.eps = eps;
        emulate_launch(decode_lm_head, dim3{2, 1, 1}, 256, head);   // fewer warps than rows: they stride over the vocabulary
        emulate_launch(decode_argmax, dim3{(unsigned)batch, 1, 1}, 1024, head);
        // ---- compare: logits and states relative to each one's largest element; the token is the first largest logit
        auto check = [&](const char* what, auto get, auto ref, size_t n, double tol, double& worst) {
            double diff = 0, scale = 0;
            for (size_t i = 0; i < n; ++i) { diff = std::max(diff, std::fabs(get(i) - ref(i))); if (!(get(i) == get(i))) diff = INFINITY; scale = std::max(scale, std::fabs(ref(i))); }
            worst = std::max(worst, diff / scale);
            if (!(diff <= tol * scale)) { printf("FAIL step %d %s: max diff %.3g, max %.3g\n", t, what, diff, scale); ok = false; }
        };
        const double tol = MD_BF16 ? 1e-2 : 1e-4;
        check("logits", [&](size_t i) { return F(logits[i]); }, [&](size_t i) { return lg[i]; }, lg.size(), tol, worst_logit);
        for (int l = 0; l < layers; ++l) {
            check("conv state", [&](size_t i) { return F(conv[l][i]); }, [&](size_t i) { return conv_ref[l][i]; }, conv[l].size(), tol, worst_state);
            check("ssm state", [&](size_t i) { return (double)ssm[l][i]; }, [&](size_t i) { return ssm_ref[l][i]; }, ssm[l].size(), tol, worst_state);
        }
        for (int b = 0; b < batch; ++b) {
            long long best = 0;
            for (long long v = 1; v < vocab; ++v) if (F(logits[b * vocab + v]) > F(logits[b * vocab + best])) best = v;
            if (tokens[b] != best || generated[(size_t)b * steps + t] != best) { printf("FAIL step %d batch %d: token %lld, expected %lld\n", t, b, tokens[b], best); ok = false; }
        }
    }
    printf("%s: worst relative difference logits %.2g, states %.2g\n", ok ? "ok" : "FAILED", worst_logit, worst_state);
    return ok ? 0 : 1;
}
