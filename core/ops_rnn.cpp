// core/ops_rnn.cpp — embedding lookup and the fused LSTM (backprop through time).
//
// The LSTM is ONE autograd node for the whole sequence. Composing it from
// elementary ops would leave ~15 nodes per step (4,500 for a 300-step review)
// and a graph the engine has to sort and free; the fused op keeps what the
// backward needs in a few flat buffers and runs the time loop backwards in
// plain code. tests/test_ops_rnn.cpp checks it against that composed graph,
// value for value, and against finite differences.
//
// Internally everything is time-major, [T, B, ...]: the state of step t is one
// contiguous [B, n] block, so every per-step GEMM and loop runs on contiguous
// memory and the weight gradients are single GEMMs over all T*B rows.
//
// Speed (a 300-step review is 300 dependent steps of small work):
//  - the rows of a batch are independent sequences, so the time loop runs
//    once per thread on its own block of rows, with single-threaded per-step
//    GEMMs; threads meet only where an in-recurrence quantizer must see the
//    whole [B, n] block (a stochastic one: ArrayQuant::rowwise false), never
//    for the elementwise deterministic ones;
//  - the gate nonlinearities are branch-free loops the compiler vectorises
//    (sigmoid / tanh through a polynomial e^x, below; hard gates as selects),
//    cloned for AVX2 (target_clones: the same IEEE operations in every clone,
//    -ffp-contract=off, so every clone gives the same bits).
// Compiled without trapping math: GCC refuses to if-convert a select whose
// comparison might raise a floating-point flag otherwise (qnn never reads
// those flags). The pragma precedes every #include so all functions here
// share the options.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

#include "core/autograd.h"
#include "core/ops.h"
#include "kernels/bitpack.h"
#include "kernels/bitserial.h"
#include "kernels/fast_exp.h"
#include "kernels/level_planes.h"
#include "kernels/sgemm.h"
#include "kernels/small_gemm.h"

namespace qnn {

using kernels::sgemm;

// ---- embedding -------------------------------------------------------------------

// y[b, t, :] = table[ids[b*T + t], :]              y [B, T, E]
// backward: table.grad[ids[b*T + t], :] += dy[b, t, :]  (skipping id 0 when frozen)
Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids, int64_t batch, int64_t steps,
                 bool freeze_padding_row) {
  QNN_CHECK(table.defined() && table.ndim() == 2,
            "embedding: table must be [V, E], got " + (table.defined() ? shape_str(table.shape()) : "undefined"));
  QNN_CHECK(batch > 0 && steps > 0, "embedding: batch and steps must be positive, got " + std::to_string(batch) +
                                        " x " + std::to_string(steps));
  QNN_CHECK((int64_t)ids.size() == batch * steps, "embedding: " + std::to_string(ids.size()) + " ids for [" +
                                                      std::to_string(batch) + ", " + std::to_string(steps) + "]");
  const int64_t V = table.dim(0), E = table.dim(1);
  for (size_t k = 0; k < ids.size(); ++k)
    if (ids[k] < 0 || ids[k] >= V)
      fail("embedding: id " + std::to_string(ids[k]) + " at position " + std::to_string(k) + " (sample " +
           std::to_string((int64_t)k / steps) + ", step " + std::to_string((int64_t)k % steps) +
           ") is outside the vocabulary [0, " + std::to_string(V) + ")");
  Tensor y = Tensor::empty({batch, steps, E});
  const float* pt = table.data();
  float* py = y.data();
  for (size_t k = 0; k < ids.size(); ++k)
    std::memcpy(py + (int64_t)k * E, pt + (int64_t)ids[k] * E, (size_t)E * sizeof(float));
  if (needs_grad(table)) {
    record(y, "embedding", {table}, [table, ids, E, freeze_padding_row](const Tensor& g) {
      float* gt = table.grad_data();
      const float* pg = g.data();
      for (size_t k = 0; k < ids.size(); ++k) {
        const int64_t id = ids[k];
        if (freeze_padding_row && id == 0) continue;
        float* row = gt + id * E;
        const float* gr = pg + (int64_t)k * E;
        for (int64_t e = 0; e < E; ++e) row[e] += gr[e];
      }
    });
  }
  return y;
}

// ---- LSTM --------------------------------------------------------------------------

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QNN_RNN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QNN_RNN_CLONES
#endif

// ---- THE recurrent products, in one place, on R rows of one step's block:
//   forward:   z[R, 4H] += h[R, H] w_hh[4H, H]^T
//   backward:  dh[R, H]  = dz[R, 4H] w_hh[4H, H]
// w_hh is packed once per pass (kernels/small_gemm.h: sgemm would re-pack it
// at every one of the T steps), each thread multiplying its own rows.

// The levels product (LstmLevels) applies when its sizes make it exact.
bool levels_usable(const LstmLevels& lv, int64_t H) {
  auto ok = [](int bits, float alpha) { return bits >= 1 && bits <= 16 && std::isfinite(alpha) && alpha > 0.f; };
  if (!ok(lv.h_bits, lv.h_alpha) || !ok(lv.w_bits, lv.w_alpha)) return false;
  const double Lh = (double)((1 << lv.h_bits) - 1), Lw = (double)((1 << lv.w_bits) - 1);
  return (double)H * Lh * Lw < 16777216.0;  // every partial sum an exact float (and int32)
}

// rows [G, H] of w, row j times s[j] (the recurrent scale folded into a
// float product's weights).
std::vector<float> scale_rows(const float* w, const float* s, int64_t G, int64_t H) {
  std::vector<float> out((size_t)(G * H));
  for (int64_t j = 0; j < G; ++j)
    for (int64_t k = 0; k < H; ++k) out[(size_t)(j * H + k)] = s[j] * w[j * H + k];
  return out;
}

// w_hh prepared for the forward steps.
struct RecurrentForward {
  int64_t H = 0;
  bool levels = false, kernels = false, xnor = false;
  LstmLevels lv;
  std::vector<float> scale;      // levels: per gate row, (h_alpha / L_h) * (w_alpha / L_w) [* s_j]
  kernels::SmallGemmB wt;        // float: (s *) w_hh^T [H x 4H]; levels without kernels: v_w^T
  kernels::PackedVector wpack;   // levels with kernels: v_w packed (xnor: pack_rows; else planes)

  // rscale: the recurrent scale s [4H] or nullptr.
  RecurrentForward(const float* w_hh, int64_t H_, const LstmLevels& l, const float* rscale) : H(H_), lv(l) {
    const int64_t G = 4 * H;
    levels = levels_usable(lv, H);
    if (!levels) {
      if (rscale) {
        const std::vector<float> ws = scale_rows(w_hh, rscale, G, H);
        kernels::pack_small_b(ws.data(), H, G, H, true, wt);
      } else {
        kernels::pack_small_b(w_hh, H, G, H, true, wt);
      }
      return;
    }
    kernels = lv.kernels;
    xnor = lv.h_bits == 1 && lv.w_bits == 1;
    const float s = (lv.h_alpha / (float)((1 << lv.h_bits) - 1)) * (lv.w_alpha / (float)((1 << lv.w_bits) - 1));
    scale.assign((size_t)G, s);
    if (rscale)
      for (int64_t j = 0; j < G; ++j) scale[(size_t)j] = s * rscale[j];
    if (kernels) {
      // Already-quantized values pack to their own levels (a sign for 1 bit).
      wpack.assign((size_t)kernels::plane_packed_words(G, H, xnor ? 1 : lv.w_bits), 0);
      if (xnor)
        kernels::pack_rows(w_hh, G, H, H, wpack.data());
      else
        kernels::quantize_pack_planes(w_hh, G, H, H, lv.w_bits, lv.w_alpha, wpack.data());
    } else {
      std::vector<float> v((size_t)(G * H));
      kernels::uniform_levels(w_hh, G * H, lv.w_bits, lv.w_alpha, v.data());
      kernels::pack_small_b(v.data(), H, G, H, true, wt);
    }
  }
};

// One thread's scratch for the levels product on up to R rows.
struct RecurrentScratch {
  std::vector<float> hv, dotf;     // without kernels: v_h [R, H], the integer sums [R, 4H]
  kernels::PackedVector hpack;     // with kernels: v_h packed
  std::vector<int32_t> doti;       // with kernels: the integer sums [R, 4H]
  RecurrentScratch(const RecurrentForward& rf, int64_t R) {
    if (!rf.levels) return;
    const int64_t H = rf.H, G = 4 * H;
    if (rf.kernels) {
      hpack.assign((size_t)kernels::plane_packed_words(R, H, rf.xnor ? 1 : rf.lv.h_bits), 0);
      doti.resize((size_t)(R * G));
    } else {
      hv.resize((size_t)(R * H));
      dotf.resize((size_t)(R * G));
    }
  }
};

void recurrent_forward(const RecurrentForward& rf, RecurrentScratch& sc, const float* h, float* z, int64_t R) {
  const int64_t H = rf.H, G = 4 * H;
  if (!rf.levels) return kernels::small_gemm(h, H, R, rf.wt, z, G, true);
  const LstmLevels& lv = rf.lv;
  const float* s = rf.scale.data();  // one multiply per sum, the same in both branches: the same bits
  if (rf.kernels) {
    int32_t* d = sc.doti.data();
    if (rf.xnor) {
      kernels::pack_rows(h, R, H, H, sc.hpack.data());
      kernels::xnor_small_i32(sc.hpack.data(), rf.wpack.data(), R, G, H, d, G);  // xnor_gemm_i32 on 2 words of 8
    } else {
      kernels::quantize_pack_planes(h, R, H, H, lv.h_bits, lv.h_alpha, sc.hpack.data());
      kernels::bitserial_gemm_i32(sc.hpack.data(), lv.h_bits, rf.wpack.data(), lv.w_bits, R, G, H, d, G);
    }
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < G; ++j) z[r * G + j] = z[r * G + j] + s[j] * (float)d[r * G + j];
  } else {
    kernels::uniform_levels(h, R * H, lv.h_bits, lv.h_alpha, sc.hv.data());
    float* d = sc.dotf.data();
    kernels::small_gemm(sc.hv.data(), H, R, rf.wt, d, G, false);  // integer sums, exact in float
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < G; ++j) z[r * G + j] = z[r * G + j] + s[j] * d[r * G + j];
  }
}

// dh = dz w_hh with w_hh packed as [4H x H] (any levels: the gradient of the
// product is the plain float product with q(w_hh)).
void recurrent_backward(const kernels::SmallGemmB& w, const float* dz, float* dh, int64_t R, int64_t H) {
  kernels::small_gemm(dz, 4 * H, R, w, dh, H, false);
}

// ---- gate math: branch-free, only un-nested selects, so loops over it vectorise.

// e^x for x <= 0: kernels/fast_exp.h (shared with the quantizers' surrogates).
using kernels::exp_nonpos;

// 1 / (1 + e^-v) from e = e^-|v| <= 1 (no overflow for any v); relative error
// < 5e-7 against ops_elementwise.cpp's sigmoid(), which the fused op is
// checked against (tests/test_ops_rnn.cpp, to 1e-5).
inline float sigm(float v) {
  const float e = exp_nonpos(-std::fabs(v));
  const float r = 1.0f / (1.0f + e);
  return v < 0.0f ? e * r : r;
}

// tanh(v): (1 - e) / (1 + e) with e = e^-2|v| where that loses no digits
// (|v| >= 1/2), else its odd Taylor series to v^15 (truncation < 1e-8 relative
// at |v| = 1/2); the sign restored last.
inline float tanh_v(float v) {
  const float a = std::fabs(v);
  const float e = exp_nonpos(-2.0f * a);
  const float big = (1.0f - e) / (1.0f + e);
  const float x2 = a * a;
  float p = -929569.0f / 638512875.0f;
  p = p * x2 + 21844.0f / 6081075.0f;
  p = p * x2 - 1382.0f / 155925.0f;
  p = p * x2 + 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  p = p * x2 + 1.0f;
  const float m = a < 0.5f ? a * p : big;
  return v < 0.0f ? -m : m;
}

// The formulas of hard_sigmoid() and hardtanh() in ops_elementwise.cpp (the
// same values, NaN included), and hardtanh's derivative 1{-1 <= v <= 1}
// (0 for NaN).
inline float hsigm(float v) {
  float y = 0.5f * (v + 1.f);
  y = y < 0.f ? 0.f : y;
  y = y > 1.f ? 1.f : y;
  return y;
}
inline float htanh(float v) {
  v = v < -1.f ? -1.f : v;
  v = v > 1.f ? 1.f : v;
  return v;
}
inline float inside(float v) {
  const float m = v >= -1.f ? 1.f : 0.f;
  return v <= 1.f ? m : 0.f;
}

// ---- one step's elementwise work on R rows (gate blocks [R, 4H], states [R, H]).
// `#pragma omp simd`: vectorise without alias checks (every loop is
// elementwise: an output element depends only on inputs at its own index, so
// in-place use, e.g. dcr == dc below, is safe).

// a = (sig(z_i), sig(z_f), act(z_g), sig(z_o)); act = tanh (hard: hardtanh, sig hard_sigmoid)
QNN_RNN_CLONES void gates_forward(const float* z, float* a, int64_t R, int64_t H, bool hard) {
  const int64_t G = 4 * H;
  for (int64_t r = 0; r < R; ++r) {
    const float* zr = z + r * G;
    float* ar = a + r * G;
    if (hard) {
#pragma omp simd
      for (int64_t j = 0; j < 2 * H; ++j) ar[j] = hsigm(zr[j]);
#pragma omp simd
      for (int64_t j = 2 * H; j < 3 * H; ++j) ar[j] = htanh(zr[j]);
#pragma omp simd
      for (int64_t j = 3 * H; j < G; ++j) ar[j] = hsigm(zr[j]);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < 2 * H; ++j) ar[j] = sigm(zr[j]);
#pragma omp simd
      for (int64_t j = 2 * H; j < 3 * H; ++j) ar[j] = tanh_v(zr[j]);
#pragma omp simd
      for (int64_t j = 3 * H; j < G; ++j) ar[j] = sigm(zr[j]);
    }
  }
}

// cr = f c_{t-1} + i g
QNN_RNN_CLONES void cell_forward(const float* a, const float* cprev, float* cr, int64_t R, int64_t H) {
  const int64_t G = 4 * H;
  for (int64_t r = 0; r < R; ++r) {
    const float* ar = a + r * G;
    const float* cp = cprev + r * H;
    float* out = cr + r * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) out[j] = ar[H + j] * cp[j] + ar[j] * ar[2 * H + j];
  }
}

// tc = act(c_t), hp = o tc
QNN_RNN_CLONES void output_forward(const float* a, const float* c, float* tc, float* hp, int64_t R, int64_t H,
                                   bool hard) {
  const int64_t G = 4 * H;
  for (int64_t r = 0; r < R; ++r) {
    const float* o = a + r * G + 3 * H;
    const float* cr = c + r * H;
    float* tr = tc + r * H;
    float* hr = hp + r * H;
    if (hard) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const float tv = htanh(cr[j]);
        tr[j] = tv;
        hr[j] = o[j] * tv;
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const float tv = tanh_v(cr[j]);
        tr[j] = tv;
        hr[j] = o[j] * tv;
      }
    }
  }
}

// dc += dhp o act'(c_t);  dq_o = dhp tc sig'(zq_o)
QNN_RNN_CLONES void output_backward(const float* dhp, const float* a, const float* c, const float* tc,
                                    const float* zq, float* dc, float* dq, int64_t R, int64_t H, bool hard) {
  const int64_t G = 4 * H;
  for (int64_t r = 0; r < R; ++r) {
    const float* o = a + r * G + 3 * H;
    const float* zo = zq + r * G + 3 * H;
    const float* d = dhp + r * H;
    const float* cr = c + r * H;
    const float* tr = tc + r * H;
    float* dcr = dc + r * H;
    float* dqo = dq + r * G + 3 * H;
    if (hard) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        dcr[j] += d[j] * o[j] * inside(cr[j]);
        dqo[j] = d[j] * tr[j] * 0.5f * inside(zo[j]);
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        dcr[j] += d[j] * o[j] * (1.f - tr[j] * tr[j]);
        dqo[j] = d[j] * tr[j] * o[j] * (1.f - o[j]);
      }
    }
  }
}

// From dcr = dL/d(f c_{t-1} + i g): dq_i, dq_f, dq_g, and dc = dcr f (becomes
// dL/dc_{t-1}). dcr may be dc itself (no cell quantizer).
QNN_RNN_CLONES void cell_backward(const float* dcr, const float* a, const float* cprev, const float* zq, float* dc,
                                  float* dq, int64_t R, int64_t H, bool hard) {
  const int64_t G = 4 * H;
  for (int64_t r = 0; r < R; ++r) {
    const float* ar = a + r * G;
    const float* zr = zq + r * G;
    const float* cp = cprev + r * H;
    const float* dr = dcr + r * H;
    float* dcw = dc + r * H;
    float* q = dq + r * G;
    if (hard) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const float d = dr[j];
        const float di = d * ar[2 * H + j], df = d * cp[j], dg = d * ar[j];
        dcw[j] = d * ar[H + j];
        q[j] = di * 0.5f * inside(zr[j]);
        q[H + j] = df * 0.5f * inside(zr[H + j]);
        q[2 * H + j] = dg * inside(zr[2 * H + j]);
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const float d = dr[j];
        const float iv = ar[j], fv = ar[H + j], gv = ar[2 * H + j];
        const float di = d * gv, df = d * cp[j], dg = d * iv;
        dcw[j] = d * fv;
        q[j] = di * iv * (1.f - iv);
        q[H + j] = df * fv * (1.f - fv);
        q[2 * H + j] = dg * (1.f - gv * gv);
      }
    }
  }
}

// gb[j] += sum over rows of d[r, j]  (row order, as a plain loop would)
QNN_RNN_CLONES void add_column_sums(const float* d, int64_t rows, int64_t n, float* gb) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* dr = d + r * n;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) gb[j] += dr[j];
  }
}

// ---- threads: each runs the whole time loop on its own block of rows.

// Threads for a batch of B sequences: at most one per 8 rows (smaller blocks
// leave the per-step GEMMs too small to pay for the threads).
int lstm_threads(int64_t B) {
  const int64_t most = omp_in_parallel() ? 1 : omp_get_max_threads();
  return (int)std::max<int64_t>(1, std::min<int64_t>(most, B / 8));
}

// This thread's rows [r0, r0 + R) of B, inside the parallel region.
void my_rows(int64_t B, int64_t& r0, int64_t& R) {
  const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
  r0 = B * id / n;
  R = B * (id + 1) / n - r0;
}

// Where an in-recurrence quantizer runs: a rowwise one (ArrayQuant::rowwise:
// pure elementwise) on this thread's rows, `mine`, with no waiting; any other
// (a stochastic one draws per call) once, on the whole [B, n] block, `whole`,
// by one thread when every thread has finished its rows before it, all
// continuing when it is done. An exception is kept for the caller to rethrow
// after the parallel region (none may leave it).
template <class Mine, class Whole>
void quant_point(const ArrayQuant& q, std::exception_ptr& err, Mine&& mine, Whole&& whole) {
  auto guarded = [&err](auto&& f) {
    try {
      f();
    } catch (...) {
#pragma omp critical(qnn_lstm_error)
      if (!err) err = std::current_exception();
    }
  };
  if (q.rowwise) {
    guarded(mine);
    return;
  }
#pragma omp barrier
#pragma omp single
  guarded(whole);
}

// Everything the backward pass reads, time-major. With `keep` false (no
// gradient wanted) the per-step buffers hold one step (two for the states),
// so evaluation needs little beyond the input projection.
struct LstmSaved {
  int64_t B = 0, T = 0, I = 0, H = 0;
  bool keep = false;
  Tensor xtm;   // [T, B, I]     x, time-major
  Tensor z;     // [T, B, 4H]    pre-activations
  Tensor zq;    // [T, B, 4H]    q_z(z) (only with a pre-activation quantizer)
  Tensor a;     // [T, B, 4H]    gate outputs i, f, g, o (undefined: they overwrite z, see lstm())
  Tensor c;     // [T+1, B, H]   c_t at slot t+1, slot 0 = c_{-1} = 0
  Tensor cr;    // [T, B, H]     f c_{t-1} + i g before q_c (only with a cell quantizer)
  Tensor tc;    // [T, B, H]     act(c_t)
  Tensor hp;    // [T, B, H]     o act(c_t) before q_h (only with a hidden quantizer)
  Tensor h;     // [T+1, B, H]   h_t at slot t+1, slot 0 = h_{-1} = 0

  int64_t step(int64_t t) const { return keep ? t : 0; }
  int64_t state(int64_t t) const { return keep ? t + 1 : ((t + 1) & 1); }  // t = -1 .. T-1
  float* Z(int64_t t) { return z.data() + t * B * 4 * H; }
  float* ZQ(int64_t t) { return zq.defined() ? zq.data() + step(t) * B * 4 * H : Z(t); }
  float* A(int64_t t) { return a.defined() ? a.data() + step(t) * B * 4 * H : Z(t); }
  float* C(int64_t t) { return c.data() + state(t) * B * H; }
  float* CR(int64_t t) { return cr.defined() ? cr.data() + step(t) * B * H : C(t); }
  float* TC(int64_t t) { return tc.data() + step(t) * B * H; }
  float* Hs(int64_t t) { return h.data() + state(t) * B * H; }
  float* HP(int64_t t) { return hp.defined() ? hp.data() + step(t) * B * H : Hs(t); }
};

}  // namespace

// Forward, per step t (shapes [B, H] unless said):
//   z_t [B, 4H] = P_t + h_{t-1} w_hh^T         (P = x w_ih^T + b, one GEMM for all t)
//   zq = q_z(z_t);  i, f, o = sig(zq_i, zq_f, zq_o);  g = tanh(zq_g)    (hard: hsig, htanh)
//   cr = f c_{t-1} + i g;  c_t = q_c(cr);  tc = act(c_t);  hp = o tc;  h_t = q_h(hp)
// Backward, t = T-1 .. 0, with dh = dL/dh_t (output + recurrent), dc = dL/dc_t from step t+1:
//   dhp = dh S_h'(hp);  do = dhp tc;  dc += dhp o act'(c_t);  dcr = dc S_c'(cr)
//   di = dcr g;  dg = dcr i;  df = dcr c_{t-1};  dc_{t-1} = dcr f
//   dzq = (di sig', df sig', dg tanh', do sig');  dz_t = dzq S_z'(z_t)
//   dh_{t-1} = dz_t w_hh
// then, over all T*B rows at once:
//   dw_ih [4H, I] += dZ^T X,  dw_hh [4H, H] += dZ^T H_prev,  db += colsum dZ,  dx = dZ w_ih
// Both time loops run per thread on a block of rows (lstm_threads); the
// quantizers on those rows too, or on whole blocks between barriers
// (quant_point).
Tensor lstm(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b, const LstmQuant* q,
            bool return_sequence, const Tensor& recurrent_scale) {
  QNN_CHECK(x.defined() && x.ndim() == 3,
            "lstm: x must be [B, T, I], got " + (x.defined() ? shape_str(x.shape()) : "undefined"));
  QNN_CHECK(w_ih.defined() && w_hh.defined() && w_ih.ndim() == 2 && w_hh.ndim() == 2,
            "lstm: w_ih must be [4H, I] and w_hh [4H, H]");
  const int64_t B = x.dim(0), T = x.dim(1), I = x.dim(2), H = w_hh.dim(1), G = 4 * H;
  QNN_CHECK(B > 0 && T > 0 && I > 0 && H > 0, "lstm: empty input " + shape_str(x.shape()) + " or hidden size 0");
  QNN_CHECK(w_hh.dim(0) == G, "lstm: w_hh is " + shape_str(w_hh.shape()) + ", expected [4H, H] = [" +
                                  std::to_string(G) + ", " + std::to_string(H) + "]");
  QNN_CHECK(w_ih.dim(0) == G && w_ih.dim(1) == I, "lstm: w_ih is " + shape_str(w_ih.shape()) + ", expected [" +
                                                      std::to_string(G) + ", " + std::to_string(I) +
                                                      "] for x " + shape_str(x.shape()));
  if (b.defined())
    QNN_CHECK(b.ndim() == 1 && b.dim(0) == G,
              "lstm: bias is " + shape_str(b.shape()) + ", expected [" + std::to_string(G) + "]");
  const Tensor& rs = recurrent_scale;
  if (rs.defined())
    QNN_CHECK(rs.numel() == G, "lstm: recurrent_scale is " + shape_str(rs.shape()) + ", expected [" +
                                   std::to_string(G) + "] (one per gate row)");
  const LstmQuant opt = q ? *q : LstmQuant{};
  const bool hard = opt.gates == LstmGates::hard;
  // Memory (a 300-step batch of 64 at H = 100 is 31 MB per [T, B, 4H]
  // buffer, and fresh pages cost as much as the arithmetic on them): smooth
  // gates read only their outputs in backward, so without a pre-activation
  // quantizer the gates overwrite z in place; and the backward writes dz_t
  // over z_t (what step t reads of z and a is read before it is written,
  // element by element: the loops below are elementwise).
  const bool gates_in_z = !hard && !opt.preact;

  LstmSaved s;
  s.B = B, s.T = T, s.I = I, s.H = H;
  s.keep = needs_grad({&x, &w_ih, &w_hh, &b, &rs});
  const int64_t steps = s.keep ? T : 1, BH = B * H, BG = B * G;
  s.xtm = Tensor::empty({T, B, I});
  s.z = Tensor::empty({T, B, G});
  if (opt.preact) s.zq = Tensor::empty({steps, B, G});
  if (!gates_in_z) s.a = Tensor::empty({steps, B, G});
  s.c = Tensor::empty({s.keep ? T + 1 : 2, B, H});
  if (opt.cell) s.cr = Tensor::empty({steps, B, H});
  s.tc = Tensor::empty({steps, B, H});
  if (opt.hidden) s.hp = Tensor::empty({steps, B, H});
  s.h = Tensor::empty({s.keep ? T + 1 : 2, B, H});
  std::memset(s.C(-1), 0, (size_t)BH * sizeof(float));
  std::memset(s.Hs(-1), 0, (size_t)BH * sizeof(float));

  // Input projection of every step: z [T*B, 4H] = x_tm [T*B, I] w_ih^T + b.
  {
    const float* px = x.data();
    float* pxt = s.xtm.data();
    for (int64_t bb = 0; bb < B; ++bb)
      for (int64_t t = 0; t < T; ++t)
        std::memcpy(pxt + (t * B + bb) * I, px + (bb * T + t) * I, (size_t)I * sizeof(float));
    float* pz = s.z.data();
    if (b.defined()) {
      const float* pb = b.data();
      for (int64_t r = 0; r < T * B; ++r) std::memcpy(pz + r * G, pb, (size_t)G * sizeof(float));
    }
    sgemm(false, true, T * B, G, I, 1.f, pxt, I, w_ih.data(), I, b.defined() ? 1.f : 0.f, pz, G);
  }

  Tensor y = return_sequence ? Tensor::empty({B, T, H}) : Tensor::empty({B, H});
  float* py = y.data();
  const RecurrentForward rf(w_hh.data(), H, opt.levels, rs.defined() ? rs.data() : nullptr);
  const int nt = lstm_threads(B);
  std::exception_ptr err;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t r0, R;
    my_rows(B, r0, R);
    RecurrentScratch scratch(rf, R);
    for (int64_t t = 0; t < T; ++t) {
      float* z = s.Z(t);
      if (t > 0) recurrent_forward(rf, scratch, s.Hs(t - 1) + r0 * H, z + r0 * G, R);  // h_{-1} = 0 adds nothing
      float* zq = s.ZQ(t);
      if (opt.preact)
        quant_point(opt.preact, err, [&] { opt.preact.forward(z + r0 * G, zq + r0 * G, R * G); },
                    [&] { opt.preact.forward(z, zq, BG); });
      float* a = s.A(t);
      gates_forward(zq + r0 * G, a + r0 * G, R, H, hard);
      float* cr = s.CR(t);
      cell_forward(a + r0 * G, s.C(t - 1) + r0 * H, cr + r0 * H, R, H);
      float* c = s.C(t);
      if (opt.cell)
        quant_point(opt.cell, err, [&] { opt.cell.forward(cr + r0 * H, c + r0 * H, R * H); },
                    [&] { opt.cell.forward(cr, c, BH); });
      float* hp = s.HP(t);
      output_forward(a + r0 * G, c + r0 * H, s.TC(t) + r0 * H, hp + r0 * H, R, H, hard);
      float* h = s.Hs(t);
      if (opt.hidden)
        quant_point(opt.hidden, err, [&] { opt.hidden.forward(hp + r0 * H, h + r0 * H, R * H); },
                    [&] { opt.hidden.forward(hp, h, BH); });
      if (return_sequence)
        for (int64_t r = r0; r < r0 + R; ++r)
          std::memcpy(py + (r * T + t) * H, h + r * H, (size_t)H * sizeof(float));
    }
  }
  if (err) std::rethrow_exception(err);
  if (!return_sequence) std::memcpy(py, s.Hs(T - 1), (size_t)BH * sizeof(float));

  if (s.keep) {
    record(y, "lstm", {x, w_ih, w_hh, b, rs}, [x, w_ih, w_hh, b, rs, s, opt, hard, return_sequence](const Tensor& g) mutable {
      const int64_t B = s.B, T = s.T, I = s.I, H = s.H, G = 4 * H, BH = B * H, BG = B * G;
      const float* pg = g.data();
      kernels::SmallGemmB whh;  // (s *) w_hh [4H x H], packed once for the T steps
      if (rs.defined()) {
        const std::vector<float> ws = scale_rows(w_hh.data(), rs.data(), G, H);
        kernels::pack_small_b(ws.data(), G, H, H, false, whh);
      } else {
        kernels::pack_small_b(w_hh.data(), G, H, H, false, whh);
      }
      // dz_t overwrites z_t (see lstm()), unless q_z's backward must read z_t after.
      Tensor dZt = opt.preact ? Tensor::empty({T, B, G}) : s.z;
      float* dZ = dZt.data();
      // dh: dL/dh_t; dc: dL/dc_t. Without a hidden (cell) quantizer dhp (dcr)
      // IS dh (dc): S' = 1.
      std::vector<float> dh((size_t)BH, 0.f), dc((size_t)BH, 0.f);
      std::vector<float> dhp_own(opt.hidden ? (size_t)BH : 0), dcr_own(opt.cell ? (size_t)BH : 0);
      std::vector<float> dzq(opt.preact ? (size_t)BG : 0);
      float* dhp = opt.hidden ? dhp_own.data() : dh.data();
      float* dcr = opt.cell ? dcr_own.data() : dc.data();
      const int nt = lstm_threads(B);
      std::exception_ptr err;
#pragma omp parallel num_threads(nt) if (nt > 1)
      {
        int64_t r0, R;
        my_rows(B, r0, R);
        for (int64_t t = T - 1; t >= 0; --t) {
          // dL/dh_t: from the output, plus the recurrent part already in dh.
          if (return_sequence) {
            for (int64_t r = r0; r < r0 + R; ++r)
              for (int64_t j = 0; j < H; ++j) dh[r * H + j] += pg[(r * T + t) * H + j];
          } else if (t == T - 1) {
            for (int64_t k = r0 * H; k < (r0 + R) * H; ++k) dh[k] += pg[k];
          }
          if (opt.hidden)
            quant_point(
                opt.hidden, err,
                [&] {
                  std::fill(dhp + r0 * H, dhp + (r0 + R) * H, 0.f);
                  opt.hidden.backward(s.HP(t) + r0 * H, dh.data() + r0 * H, dhp + r0 * H, R * H);
                },
                [&] {
                  std::fill(dhp, dhp + BH, 0.f);
                  opt.hidden.backward(s.HP(t), dh.data(), dhp, BH);
                });
          const float* a = s.A(t);
          const float* zq = s.ZQ(t);
          float* dzt = dZ + t * BG;
          float* dq = opt.preact ? dzq.data() : dzt;  // dL/dzq lands here
          output_backward(dhp + r0 * H, a + r0 * G, s.C(t) + r0 * H, s.TC(t) + r0 * H, zq + r0 * G,
                          dc.data() + r0 * H, dq + r0 * G, R, H, hard);
          if (opt.cell)
            quant_point(
                opt.cell, err,
                [&] {
                  std::fill(dcr + r0 * H, dcr + (r0 + R) * H, 0.f);
                  opt.cell.backward(s.CR(t) + r0 * H, dc.data() + r0 * H, dcr + r0 * H, R * H);
                },
                [&] {
                  std::fill(dcr, dcr + BH, 0.f);
                  opt.cell.backward(s.CR(t), dc.data(), dcr, BH);
                });
          cell_backward(dcr + r0 * H, a + r0 * G, s.C(t - 1) + r0 * H, zq + r0 * G, dc.data() + r0 * H,
                        dq + r0 * G, R, H, hard);
          if (opt.preact)
            quant_point(
                opt.preact, err,
                [&] {
                  std::fill(dzt + r0 * G, dzt + (r0 + R) * G, 0.f);
                  opt.preact.backward(s.Z(t) + r0 * G, dzq.data() + r0 * G, dzt + r0 * G, R * G);
                },
                [&] {
                  std::fill(dzt, dzt + BG, 0.f);
                  opt.preact.backward(s.Z(t), dzq.data(), dzt, BG);
                });
          // dh = dL/dh_{t-1} (recurrent part)
          if (t > 0) recurrent_backward(whh, dzt + r0 * G, dh.data() + r0 * H, R, H);
        }
      }
      if (err) std::rethrow_exception(err);
      // Weight, bias and input gradients over all T*B rows at once.
      float beta;
      if (w_ih.requires_grad()) {
        float* gw = grad_for_gemm(w_ih, beta);
        sgemm(true, false, G, I, T * B, 1.f, dZ, G, s.xtm.data(), I, beta, gw, I);
      }
      // row (t, b) of H_prev is h_{t-1}: slots 0 .. T-1
      if (!rs.defined() && w_hh.requires_grad()) {
        float* gw = grad_for_gemm(w_hh, beta);
        sgemm(true, false, G, H, T * B, 1.f, dZ, G, s.Hs(-1), H, beta, gw, H);
      } else if (rs.defined() && (w_hh.requires_grad() || rs.requires_grad())) {
        // M = dZ^T H_prev [4H, H]: dw_hh[j, :] += s_j M[j, :], and, as
        // sum_{t,b} dz[j] (h_{t-1} w_hh^T)[j] = sum_k w_hh[j, k] M[j, k],
        // ds_j += <w_hh[j, :], M[j, :]> (no per-step product saved).
        std::vector<float> M((size_t)(G * H));
        sgemm(true, false, G, H, T * B, 1.f, dZ, G, s.Hs(-1), H, 0.f, M.data(), H);
        const float* pw = w_hh.data();
        const float* ps = rs.data();
        float* gw = w_hh.requires_grad() ? w_hh.grad_data() : nullptr;
        float* gs = rs.requires_grad() ? rs.grad_data() : nullptr;
        for (int64_t j = 0; j < G; ++j) {
          const float* mj = M.data() + j * H;
          if (gw)
            for (int64_t k = 0; k < H; ++k) gw[j * H + k] += ps[j] * mj[k];
          if (gs) {
            double acc = 0;
            for (int64_t k = 0; k < H; ++k) acc += (double)pw[j * H + k] * mj[k];
            gs[j] += (float)acc;
          }
        }
      }
      if (b.defined() && b.requires_grad()) add_column_sums(dZ, T * B, G, b.grad_data());
      if (x.requires_grad()) {
        Tensor dxt = Tensor::empty({T, B, I});
        sgemm(false, false, T * B, I, G, 1.f, dZ, G, w_ih.data(), I, 0.f, dxt.data(), I);
        float* gx = x.grad_data();
        const float* pd = dxt.data();
        for (int64_t bb = 0; bb < B; ++bb)
          for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < I; ++i) gx[(bb * T + t) * I + i] += pd[(t * B + bb) * I + i];
      }
    });
  }
  return y;
}

}  // namespace qnn
