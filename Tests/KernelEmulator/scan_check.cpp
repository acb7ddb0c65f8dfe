// Runs the selective-scan kernels (Kernels/*.cu) on the CPU through cuda_emulation.h and compares them with a
// double-precision reference: outputs directly, gradients against central finite differences of the reference.
// Configuration comes from -D flags (see run.sh); arguments: batch dim len seed.
#include "cuda_emulation.h"
#include "../../Kernels/selective_scan_fwd.cu"
#if SS_Q == 1   // the backward kernel runs one channel per thread: configurations with Q > 1 check the forward only
#include "../../Kernels/selective_scan_bwd.cu"
#endif
#include <cstdio>
#include <random>
#include <string>

using std::vector;
typedef vector<double> Vec;

static int Bt, Dm, L;   // batch, channels, length

struct Inputs { Vec u, delta, A, B, C, D, z, bias, h0; };

// Reference forward in double: returns out (B, D, L), the last state (B, D, N) and the state at every chunk start
// (B, D, chunks, N), which the forward kernel saves for the backward one.
static void reference(const Inputs& in, Vec& out, Vec& last, Vec* chunk_starts = nullptr)
{
    const int chunks = (L + T - 1) / T;
    out.assign((size_t)Bt * Dm * L, 0.0);
    last.assign((size_t)Bt * Dm * N, 0.0);
    if (chunk_starts) chunk_starts->assign((size_t)Bt * Dm * chunks * N, 0.0);
    for (int b = 0; b < Bt; ++b)
        for (int d = 0; d < Dm; ++d) {
            vector<double> h(N, 0.0);
            if (SS_HAS_H0) for (int n = 0; n < N; ++n) h[n] = in.h0[((size_t)b * Dm + d) * N + n];
            for (int t = 0; t < L; ++t) {
                if (chunk_starts && t % T == 0)
                    for (int n = 0; n < N; ++n) (*chunk_starts)[(((size_t)b * Dm + d) * chunks + t / T) * N + n] = h[n];
                const size_t r = ((size_t)b * Dm + d) * L + t;
                double x = in.delta[r] + (SS_HAS_BIAS ? in.bias[d] : 0.0);
                const double dt = SS_SOFTPLUS ? (x <= 20 ? std::log1p(std::exp(x)) : x) : x;
                double y = 0;
                for (int n = 0; n < N; ++n) {
                    const double Bv = SS_VAR_B ? in.B[((size_t)b * N + n) * L + t] : in.B[(size_t)d * N + n];
                    const double Cv = SS_VAR_C ? in.C[((size_t)b * N + n) * L + t] : in.C[(size_t)d * N + n];
                    h[n] = std::exp(dt * in.A[(size_t)d * N + n]) * h[n] + dt * Bv * in.u[r];
                    y += h[n] * Cv;
                }
                if (SS_HAS_D) y += in.D[d] * in.u[r];
                if (SS_HAS_Z) { const double z = in.z[r]; y *= z / (1 + std::exp(-z)); }
                out[r] = y;
            }
            for (int n = 0; n < N; ++n) last[((size_t)b * Dm + d) * N + n] = h[n];
        }
}

static double loss(const Inputs& in, const Vec& dout, const Vec& dlast)
{
    Vec out, last;
    reference(in, out, last);
    double s = 0;
    for (size_t i = 0; i < out.size(); ++i) s += out[i] * dout[i];
    if (SS_HAS_DLAST) for (size_t i = 0; i < last.size(); ++i) s += last[i] * dlast[i];
    return s;
}

static double round_in(double v)   // the value an in_t holds
{
    in_t x;
    from_f((float)v, x);
    return to_f(x);
}

static int failures = 0;
static void check(const char* what, const vector<float>& got, const Vec& want, double tol)
{
    double maxw = 0, maxdiff = 0;
    size_t worst = 0;
    bool finite = true;
    for (size_t i = 0; i < want.size(); ++i) {
        maxw = std::max(maxw, std::fabs(want[i]));
        if (!std::isfinite(got[i])) finite = false;
        const double diff = std::fabs(got[i] - want[i]);
        if (diff > maxdiff || !std::isfinite(got[i])) { maxdiff = diff; worst = i; }
    }
    const double rel = maxdiff / (maxw + 1e-30);
    const bool ok = finite && rel <= tol;
    if (!ok) ++failures;
    std::printf("  %-10s %s max|diff|/max|ref| = %.2e (tol %.0e)%s", what, ok ? "ok  " : "FAIL", rel, tol, ok ? "\n" : "");
    if (!ok) std::printf("  worst at %zu: got %g want %g\n", worst, got[worst], want[worst]);
}

int main(int argc, char** argv)
{
    Bt = std::stoi(argv[1]); Dm = std::stoi(argv[2]); L = std::stoi(argv[3]);
    std::mt19937 rng(std::stoi(argv[4]));
    std::normal_distribution<double> nd(0, 1);
    std::uniform_real_distribution<double> ud(0, 1);
    auto randn = [&](size_t n, double scale, bool rounded) { Vec v(n); for (auto& x : v) { x = nd(rng) * scale; if (rounded) x = round_in(x); } return v; };
    const size_t BDL = (size_t)Bt * Dm * L, BNL = (size_t)Bt * N * L, DN = (size_t)Dm * N, BDN = (size_t)Bt * Dm * N;
    Inputs in;
    in.u = randn(BDL, 1, true);
    in.delta = randn(BDL, 0.5, true);
    in.A.resize(DN); for (auto& x : in.A) x = (double)(float)(-(ud(rng) * 1.5 + 0.5));
    in.B = SS_VAR_B ? randn(BNL, 1, true) : randn(DN, 1, false);
    in.C = SS_VAR_C ? randn(BNL, 1, true) : randn(DN, 1, false);
    in.D = randn(Dm, 1, false); in.z = randn(BDL, 1, true); in.bias = randn(Dm, 0.5, false); in.h0 = randn(BDN, 1, false);
    // Without softplus, keep delta + bias positive (a negative step makes the recurrence explode).
    if (!SS_SOFTPLUS) {
        for (auto& x : in.delta) x = round_in(ud(rng) + 0.01);
        for (auto& x : in.bias) x = 0.1 * ud(rng);
    }
    for (Vec* v : {&in.D, &in.bias, &in.h0}) for (auto& x : *v) x = (double)(float)x;
    if (!SS_VAR_B) for (auto& x : in.B) x = (double)(float)x;
    if (!SS_VAR_C) for (auto& x : in.C) x = (double)(float)x;
    Vec dout = randn(BDL, 1, true), dlast = randn(BDN, 1, false);
    for (auto& x : dlast) x = (double)(float)x;

    auto to_in = [](const Vec& v) { vector<in_t> r(v.size()); for (size_t i = 0; i < v.size(); ++i) from_f((float)v[i], r[i]); return r; };
    auto to_f32 = [](const Vec& v) { return vector<float>(v.begin(), v.end()); };
    auto from_in = [](const vector<in_t>& v) { vector<float> r(v.size()); for (size_t i = 0; i < v.size(); ++i) r[i] = to_f(v[i]); return r; };
    vector<in_t> u = to_in(in.u), delta = to_in(in.delta), z = to_in(in.z), doutv = to_in(dout);
    vector<float> A = to_f32(in.A), D = to_f32(in.D), bias = to_f32(in.bias), h0 = to_f32(in.h0), dl = to_f32(dlast);
    vector<in_t> Bv = to_in(in.B), Cv = to_in(in.C);
    vector<float> Bf = to_f32(in.B), Cf = to_f32(in.C);
    const void* Bp = SS_VAR_B ? (const void*)Bv.data() : (const void*)Bf.data();
    const void* Cp = SS_VAR_C ? (const void*)Cv.data() : (const void*)Cf.data();

    const long long nsaved = (L + T - 1) / T;
    vector<in_t> out(BDL);
    for (auto& x : out) from_f(NAN, x);
    vector<float> last(BDN, NAN), saved((size_t)Bt * Dm * nsaved * N, NAN);
    FwdParams fp{u.data(), delta.data(), A.data(), Bp, Cp, D.data(), z.data(), bias.data(), h0.data(), out.data(), last.data(),
                 saved.data(), Bt, Dm, L, nsaved};
    dim3 grid{(unsigned)((Dm + CB - 1) / CB), (unsigned)Bt, 1};
    emulate_launch(selective_scan_fwd, grid, THREADS, fp);

    Vec rout, rlast, rsaved;
    reference(in, rout, rlast, &rsaved);
    const double tol_out = SS_BF16 ? 1e-2 : 1e-5, tol_grad = SS_BF16 ? 2e-2 : 1e-4;
    std::printf("forward\n");
    check("out", from_in(out), rout, tol_out);
    check("last", last, rlast, 1e-5);
    check("saved", saved, rsaved, 1e-5);
#if SS_Q == 1

    vector<in_t> du(BDL), dd(BDL), dz(BDL);
    for (auto* v : {&du, &dd, &dz}) for (auto& x : *v) from_f(NAN, x);
    vector<float> dA(DN, 0.f), dB(SS_VAR_B ? BNL : DN, 0.f), dC(SS_VAR_C ? BNL : DN, 0.f), dD(Dm, 0.f), db(Dm, 0.f), dh0(BDN, NAN);
    BwdParams bp{u.data(), delta.data(), A.data(), Bp, Cp, D.data(), z.data(), bias.data(), doutv.data(), dl.data(), saved.data(),
                 du.data(), dd.data(), dz.data(), dA.data(), dB.data(), dC.data(), dD.data(), db.data(), SS_HAS_H0 ? dh0.data() : nullptr,
                 Bt, Dm, L, nsaved};
    emulate_launch(selective_scan_bwd, grid, THREADS, bp);

    // Finite differences of the reference (double), at the inputs the kernels saw (dout rounded like the kernel's).
    for (size_t i = 0; i < dout.size(); ++i) dout[i] = to_f(doutv[i]);
    auto numgrad = [&](Vec& x) {
        Vec g(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
            const double keep = x[i], h = 1e-6 * std::max(1.0, std::fabs(keep));
            x[i] = keep + h; const double lp = loss(in, dout, dlast);
            x[i] = keep - h; const double lm = loss(in, dout, dlast);
            x[i] = keep;
            g[i] = (lp - lm) / (2 * h);
        }
        return g;
    };
    std::printf("backward\n");
    check("du", from_in(du), numgrad(in.u), tol_grad);
    check("ddelta", from_in(dd), numgrad(in.delta), tol_grad);
    check("dA", dA, numgrad(in.A), tol_grad);
    check("dB", dB, numgrad(in.B), tol_grad);
    check("dC", dC, numgrad(in.C), tol_grad);
    if (SS_HAS_D) check("dD", dD, numgrad(in.D), tol_grad);
    if (SS_HAS_Z) check("dz", from_in(dz), numgrad(in.z), tol_grad);
    if (SS_HAS_BIAS) check("dbias", db, numgrad(in.bias), tol_grad);
    if (SS_HAS_H0) check("dh0", dh0, numgrad(in.h0), tol_grad);
#endif
    std::printf("%s\n", failures == 0 ? "PASS" : "FAIL");
    return failures == 0 ? 0 : 1;
}
