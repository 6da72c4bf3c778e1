// kernels/packed_runner.cpp — PackedRunner (see packed_model.h): input
// staging, the adaptive thread choice, and the two paths — one OpenMP region
// for small batches of all-binary dense chains (run_small), layer by layer
// otherwise (run_large; conv / pool layers in packed_cnn.cpp).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bitserial.h"
#include "kernels/isa.h"
#include "kernels/level_planes.h"
#include "kernels/packed_model.h"
#include "kernels/packed_model_internal.h"
#include "kernels/pm1_gemm.h"
#include "kernels/sgemm.h"
#include "kernels/xnor_gemm.h"

namespace qnn::kernels {

using namespace pmodel;

namespace {

// uint8 input needs the pixel scaling the model was trained with.
void check_pixels_input(const PackedModel& m) {
  if (m.input_scale == InputScale::none)
    throw std::invalid_argument("packed model: the model takes float input (input scaling 'none'); use logits_f32");
}


// CPU seconds of the calling thread: a profile that a busy machine's
// preemptions do not inflate (with one thread, all of a layer's work).
double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

}  // namespace

PackedRunner::PackedRunner(PackedModel m) : m_(std::move(m)) {
  m_.validate("PackedRunner");
  (void)active_isa();  // decide the kernel variant now, outside any parallel region
  // The one-region path handles chains of binary layers whose activations
  // stay packed (only the first layer may take pixels or signs of floats).
  chain_ = true;
  for (size_t i = 0; i < m_.layers.size(); ++i) {
    const PackedLayer& L = m_.layers[i];
    chain_ = chain_ && L.type == LayerType::dense_binary && (i == 0 || L.input == LayerInput::packed);
  }
  thresh_off_.assign(m_.layers.size(), 0);
  wdec_.resize(m_.layers.size());
  cw_.resize(m_.layers.size());
  sc_.resize(m_.layers.size());
  for (size_t i = 0; i < m_.layers.size(); ++i) {
    const PackedLayer& L = m_.layers[i];
    max_width_ = std::max({max_width_, L.in, L.out});
    max_pwords_ = std::max(max_pwords_, packed_words(std::max(L.in, L.out)));
    if (L.spatial()) {  // packed NHWC maps in and out
      const SpatialGeom& g = L.geom;
      max_pwords_ = std::max({max_pwords_, g.H * g.W * pixel_words(g.C),
                              L.out_h() * L.out_w() * pixel_words(L.out_channels())});
    }
    if (L.type == LayerType::conv_f32) sgemm_ = true;
    if (L.type == LayerType::conv_levels) {
      // Levels input: the integer levels v of the weights (exact sums, any
      // order); else the float weights the training framework's quantizer
      // outputs, for conv2d's float product.
      wdec_[i] = L.input == LayerInput::levels ? L.level_integers() : L.level_weights();
      if (L.input != LayerInput::levels) sgemm_ = true;
    }
    if (L.type == LayerType::conv_binary && L.input == LayerInput::packed) {
      // The (c, ky, kx) rows as +-1 floats, repacked in the NHWC tap order of packed_conv.h.
      const SpatialGeom& g = L.geom;
      std::vector<float> w(static_cast<size_t>(g.O * g.taps()));
      unpack_rows(L.w_bits.data(), g.O, g.taps(), w.data(), g.taps());
      cw_[i] = pack_conv_weights(w.data(), g.O, g.C, g.K, g.K);
    }
    if (L.type == LayerType::conv_binary && L.sign_out) prepare_sign_conv(i);
    if (L.type == LayerType::dense_f32) sgemm_ = true;
    if (L.type == LayerType::dense_levels) {
      if (L.input == LayerInput::levels) {
        lplane_words_ = std::max(lplane_words_, plane_packed_words(1, L.in, L.in_bits));
      } else if (!pm1_product(L)) {  // a float product on the weights the training framework's quantizer outputs
        wdec_[i] = L.level_weights();
        sgemm_ = true;
      }
    }
    if (!L.sign_out) continue;
    thresh_off_[i] = (int64_t)thresh_f_.size();
    // |t| < 2^24: exact; a conv on pixels compares its sums V / 256 with T / 256 (exact too).
    const bool pix_conv = L.type == LayerType::conv_binary && L.input == LayerInput::pixels8;
    for (int32_t t : L.thresh) thresh_f_.push_back(pix_conv ? float(t) / 256.0f : float(t));
  }
}

void PackedRunner::set_profile(bool on) {
  profile_ = on;
  if (on) prof_.assign(m_.layers.size(), 0.0);
}

void PackedRunner::reserve(int64_t n) {
  if (n <= cap_) return;
  const size_t nf = static_cast<size_t>(n * max_width_);
  for (auto& f : f_) f.assign(nf, 0.f);
  for (auto& p : p_) p = PackedVector(static_cast<size_t>(n * max_pwords_));
  const PackedLayer& L0 = m_.layers.front();
  if (L0.input == LayerInput::pixels8 && L0.type == LayerType::dense_binary) planes_ = PackedVector(static_cast<size_t>(plane_packed_words(n, L0.in, 8)));
  if (lplane_words_ > 0) lplanes_ = PackedVector(static_cast<size_t>(n * lplane_words_));
  cap_ = n;
}

void PackedRunner::logits_u8(const uint8_t* x, int64_t n, float* logits) {
  if (n < 0) throw std::invalid_argument("PackedRunner: negative batch");
  if (n == 0) return;
  if (!x || !logits) throw std::invalid_argument("PackedRunner: null pointer");
  check_pixels_input(m_);
  reserve(n);
  const PackedLayer& L0 = m_.layers.front();
  if (L0.input == LayerInput::pixels8 && L0.type == LayerType::dense_binary) {
    // Small batches take the bit planes; larger ones the floats (2p - 255) / 256
    // (run_large's look-up product for this layer), never both.
    pix_f32_ = n > kSmallBatch;
    if (pix_f32_) {
      float* f = f_[0].data();
      const int64_t cnt = n * L0.in;
      for (int64_t i = 0; i < cnt; ++i) f[i] = float(2 * int(x[i]) - 255) / 256.0f;  // exact
    } else {
      pack_pixel_planes(x, n, L0.in, planes_.data());
    }
  } else {
    float lut[256];
    for (int p = 0; p < 256; ++p) lut[p] = scale_input_pixel(m_.input_scale, (uint8_t)p);
    float* f = f_[0].data();
    const int64_t cnt = n * L0.in;
    for (int64_t i = 0; i < cnt; ++i) f[i] = lut[x[i]];
  }
  fcur_ = 0;
  run(n, logits);
}

void PackedRunner::logits_f32(const float* x, int64_t n, float* logits) {
  if (n < 0) throw std::invalid_argument("PackedRunner: negative batch");
  if (n == 0) return;
  if (!x || !logits) throw std::invalid_argument("PackedRunner: null pointer");
  reserve(n);
  const PackedLayer& L0 = m_.layers.front();
  const int64_t cnt = n * L0.in;
  if (L0.input == LayerInput::pixels8) {
    // The exact values (2p - 255) / 256 only: anything else has no 8-bit form.
    std::vector<uint8_t> px(static_cast<size_t>(cnt));
    for (int64_t i = 0; i < cnt; ++i) {
      const double p = (double(x[i]) * 256.0 + 255.0) / 2.0;
      const bool ok = p >= 0.0 && p <= 255.0 && p == std::floor(p) &&
                      scale_input_pixel(InputScale::odd_over_256, uint8_t(p)) == x[i];
      if (!ok)
        throw std::invalid_argument("PackedRunner: input value " + std::to_string(x[i]) + " at index " +
                                    std::to_string(i) +
                                    " is not a pixel (2p-255)/256; this model's first layer computes on 8-bit pixels");
      px[static_cast<size_t>(i)] = uint8_t(p);
    }
    pix_f32_ = n > kSmallBatch || L0.type == LayerType::conv_binary;  // as logits_u8: floats or planes, not both
    if (pix_f32_)
      std::copy(x, x + cnt, f_[0].data());  // checked above: exactly (2p - 255) / 256
    else
      pack_pixel_planes(px.data(), n, L0.in, planes_.data());
  } else {
    std::copy(x, x + cnt, f_[0].data());
  }
  fcur_ = 0;
  run(n, logits);
}

void PackedRunner::predict_u8(const uint8_t* x, int64_t n, int32_t* labels) {
  const int64_t C = m_.num_classes();
  if ((int64_t)logits_.size() < n * C) logits_.resize(static_cast<size_t>(n * C));
  float* lg = logits_.data();
  logits_u8(x, n, lg);
  for (int64_t i = 0; i < n; ++i) {
    const float* r = lg + i * C;
    int32_t best = 0;
    for (int64_t j = 1; j < C; ++j)
      if (r[j] > r[best] || (std::isnan(r[best]) && !std::isnan(r[j]))) best = (int32_t)j;
    labels[i] = best;
  }
}

void PackedRunner::run(int64_t n, float* logits) {
  const bool small = chain_ && n <= kSmallBatch && !omp_in_parallel();
  const int T = omp_get_max_threads();
  if (T <= 1 || policy_ != ThreadPolicy::adaptive || sgemm_) {
    execute(small, T > 1 && policy_ != ThreadPolicy::one, n, logits);
    return;
  }
  // Adaptive (see packed_model.h): windows of the best choice, short trials of
  // the other. The first trial call is a warm-up (the other thread count
  // finds colder caches) and is not counted.
  const int64_t kTrialCalls = small ? 48 : 2, kMinInterval = small ? 512 : 6, kMaxInterval = small ? 1 << 17 : 1 << 10;
  Tuner& tu = tune_[small ? 0 : 1];
  if (tu.best < 0) {  // start on one thread for small batches, all threads for large ones
    tu.best = small ? 0 : 1;
    tu.interval = small ? 64 : 2;  // a first, short window, then a trial
  }
  const bool trial = tu.trial_left > 0;
  const int mode = trial ? 1 - tu.best : tu.best;
  const auto t0 = std::chrono::steady_clock::now();
  execute(small, mode == 1, n, logits);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!trial) {
    tu.win_sum += dt;
    tu.win_rows += n;
    if (++tu.win_calls < tu.interval) return;
    const double cost = tu.win_sum / double(tu.win_rows);
    tu.win_sum = 0, tu.win_rows = 0, tu.win_calls = 0;
    if (tu.probation) {  // the window after a switch: was it really better?
      tu.probation = false;
      if (cost > tu.prev_cost) {  // no: go back, and try again later than before
        tu.best = 1 - tu.best;
        tu.best_cost = tu.prev_cost;
        tu.interval = std::min(2 * tu.prev_interval, kMaxInterval);
        return;
      }
    }
    tu.best_cost = cost;
    tu.trial_left = int(kTrialCalls) + 1;
    tu.trial_sum = 0, tu.trial_rows = 0;
    return;
  }
  const bool warmup = tu.trial_left == kTrialCalls + 1;
  if (!warmup) tu.trial_sum += dt, tu.trial_rows += n;
  --tu.trial_left;
  const bool hopeless = !warmup && tu.trial_sum > 3.0 * tu.best_cost * double(tu.trial_rows);
  if (tu.trial_left > 0 && !hopeless) return;
  tu.trial_left = 0;
  if (!hopeless && tu.trial_rows > 0 && tu.trial_sum / double(tu.trial_rows) < tu.best_cost) {
    tu.prev_cost = tu.best_cost;  // switch, on probation for one window
    tu.prev_interval = tu.interval;
    tu.best = mode;
    tu.probation = true;
    tu.interval = kMinInterval;
  } else {
    tu.interval = std::min(std::max(2 * tu.interval, kMinInterval), kMaxInterval);
  }
}

void PackedRunner::execute(bool small, bool all_threads, int64_t n, float* logits) {
  ++calls_[all_threads ? 1 : 0];
  const int T = omp_get_max_threads();
  if (small) {
    run_small(n, logits, all_threads ? T : 1);
    return;
  }
  if (all_threads || T == 1) {
    run_large(n, logits);
    return;
  }
  // One thread for the kernels' own parallel regions (and BLAS), restored after.
  struct Restore {
    int t;
    ~Restore() { omp_set_num_threads(t); }
  } restore{T};
  omp_set_num_threads(1);
  run_large(n, logits);
}

// A first layer on 8-bit pixels, for a large batch: the products
// (2p - 255)/256 x (+-1) are multiples of 1/256 below 2^16, so every partial
// sum is exact in float, in any order: the table look-up product
// (kernels/pm1_gemm.h; about twice as fast here as the eight bit-serial
// planes) gives y = V / 256 exactly, V the integer dot of the bit-serial path.
// Y receives y [n x out]; then per row V = y * 256 and the layer's epilogue:
// packed signs into P (sign_out) or floats written over Y.
static void pixel_layer_pm1(const PackedLayer& L, const float* X, int64_t n, uint64_t* P, float* Y,
                            const EpilogueFns& fn) {
  pm1_gemm_cols(n, L.in, L.out, X, L.in, 1, L.w_bits.data(), Y, L.out, false);
  const int64_t WO = packed_words(L.out);
#pragma omp parallel for schedule(static) if (n * L.out >= (int64_t(1) << 16))
  for (int64_t r = 0; r < n; ++r) {
    std::vector<int32_t> V(static_cast<size_t>(L.out));
    float* y = Y + r * L.out;
    for (int64_t j = 0; j < L.out; ++j) V[static_cast<size_t>(j)] = int32_t(y[j] * 256.0f);  // exact
    if (P) {
      uint64_t* row = P + r * WO;
      fn.threshold_pack(V.data(), L.thresh.data(), L.flip.data(), L.out, row);
      for (int64_t w = (L.out + 63) / 64; w < WO; ++w) row[w] = 0;  // pad words (bitpack.h rule 4)
    } else {
      float_epilogue_binary(L, V.data(), 0, L.out, y);
    }
  }
}

// Layer by layer; every kernel parallelises internally.
void PackedRunner::run_large(int64_t n, float* logits) {
  const size_t nl = m_.layers.size();
  const EpilogueFns fn = epilogue_fns();
  int fi = fcur_;  // f_ buffer holding the current float activations (if any)
  int pi = -1;     // p_ buffer holding the current packed activations (if any)
  // Profile: the time between the starts of two iterations is the earlier layer's.
  double tp = profile_ ? thread_seconds() : 0.0;
  auto lap = [&](size_t layer) {
    const double t = thread_seconds();
    prof_[layer] += t - tp;
    tp = t;
  };
  for (size_t i = 0; i < nl; ++i) {
    if (profile_ && i > 0) lap(i - 1);
    const PackedLayer& L = m_.layers[i];
    const bool last = i + 1 == nl;
    float* fout = last ? logits : f_[fi ^ 1].data();
    if (L.spatial()) {
      spatial_layer(i, n, fi, pi);
      continue;
    }
    if (i > 0 && m_.layers[i - 1].spatial() && m_.layers[i - 1].packed_out()) {
      // Flatten: packed NHWC maps -> packed rows in the NCHW order the weights were trained on.
      const PackedLayer& Lp = m_.layers[i - 1];
      nhwc_to_flat_rows(p_[pi].data(), n, Lp.out_channels(), Lp.out_h(), Lp.out_w(), p_[pi ^ 1].data());
      pi ^= 1;
    }
    if (L.type == LayerType::dense_levels && L.input == LayerInput::levels) {
      // uniform_linear: levels of x, exact integer dot, then y = s * dot (+ b).
      pack_level_planes(f_[fi].data(), n, L.in, L.in_bits, L.in_alpha, lplanes_.data());
      bitserial_gemm_f32(lplanes_.data(), L.in_bits, L.w_planes.data(), L.wbits, n, L.out, L.in, fout, L.out, nullptr,
                         nullptr);
      scale_bias_f32(L, level_step(L.in_bits, L.in_alpha) * level_step(L.wbits, L.w_alpha), fout, n);
      float_epilogue_f32(L, fout, n);
      fi ^= 1;
      continue;
    }
    if (L.type == LayerType::dense_f32 || L.type == LayerType::dense_levels) {
      float* X = f_[fi].data();
      // levels_f32: the input becomes what a QuantAct outputs (in place: this
      // buffer is not read again in this call).
      if (L.input == LayerInput::levels_f32) uniform_values(X, n * L.in, L.in_bits, L.in_alpha, X);
      const bool has_b = !L.bias.empty();
      if (has_b)
        for (int64_t r = 0; r < n; ++r) std::copy(L.bias.begin(), L.bias.end(), fout + r * L.out);
      if (pm1_product(L)) {
        // sign_weight_linear's product: table look-ups in pm1_gemm.h's order,
        // S's columns = the weight rows (1 plane of sign bits = pack_rows).
        pm1_gemm_cols(n, L.in, L.out, X, L.in, 1, L.w_planes.data(), fout, L.out, has_b);
      } else {
        // The call of core/ops_linear.cpp `linear`, so the sums round alike.
        const float* Wt = L.type == LayerType::dense_f32 ? L.w_f32.data() : wdec_[i].data();
        sgemm(false, true, n, L.out, L.in, 1.f, X, L.in, Wt, L.in, has_b ? 1.f : 0.f, fout, L.out);
      }
      float_epilogue_f32(L, fout, n);
      fi ^= 1;
      continue;
    }
    if (L.input == LayerInput::pixels8 && pix_f32_) {
      pixel_layer_pm1(L, f_[fi].data(), n, L.sign_out ? p_[0].data() : nullptr,
                      L.sign_out ? f_[fi ^ 1].data() : fout, fn);
      if (L.sign_out)
        pi = 0;
      else
        fi ^= 1;
      continue;
    }
    const uint64_t* A;
    int po;  // output packed buffer
    if (L.input == LayerInput::pixels8) {
      A = planes_.data();
      po = 0;
    } else if (L.input == LayerInput::sign) {
      pack_rows(f_[fi].data(), n, L.in, L.in, p_[0].data());
      A = p_[0].data();
      po = 1;
    } else {
      A = p_[pi].data();
      po = pi ^ 1;
    }
    if (L.sign_out && L.input != LayerInput::pixels8)  // the fused XNOR + threshold kernel
      xnor_gemm_sign(A, L.w_bits.data(), n, L.out, L.in, thresh_f_.data() + thresh_off_[i], L.flip.data(),
                     p_[po].data());
    else  // bit-serial 8-bit x 1-bit, or float outputs
      binary_layer(L, A, n, 0, L.out, p_[po].data(), fout, fn, false);
    if (L.sign_out)
      pi = po;
    else
      fi ^= 1;
  }
  if (profile_) lap(nl - 1);
}

// Small batches: one parallel region for the whole network, a fixed slice of
// output channels (whole 64-column words) per thread, barriers between layers.
void PackedRunner::run_small(int64_t n, float* logits, int nthreads) {
  const size_t nl = m_.layers.size();
  const EpilogueFns fn = epilogue_fns();
  int pi = -1;
  if (m_.layers[0].input == LayerInput::sign) {  // only the first layer may pack floats
    pack_rows(f_[fcur_].data(), n, m_.layers[0].in, m_.layers[0].in, p_[0].data());
    pi = 0;
  }
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int pcur = pi;
    for (size_t i = 0; i < nl; ++i) {
      const PackedLayer& L = m_.layers[i];
      const int64_t words = (L.out + 63) / 64;
      const int64_t n0 = 64 * (words * t / nt), n1 = std::min(L.out, 64 * (words * (t + 1) / nt));
      const bool pix = L.input == LayerInput::pixels8;
      const uint64_t* A = pix ? planes_.data() : p_[pcur].data();
      const int po = pix ? (pcur == 0 ? 1 : 0) : pcur ^ 1;
      if (n1 > n0) binary_layer(L, A, n, n0, n1, p_[po].data(), i + 1 == nl ? logits : f_[1].data(), fn, true);
      pcur = po;
      if (i + 1 < nl) {
#pragma omp barrier
      }
    }
  }
}

}  // namespace qnn::kernels
