// layers/quant/export.cpp — Module -> kernels::PackedModel (see export.h).
#include "layers/quant/export.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <optional>

#include "core/ap2.h"
#include "core/autograd.h"
#include "core/fileio.h"
#include "core/ops.h"
#include "kernels/bitpack.h"
#include "kernels/bitserial.h"
#include "kernels/level_planes.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"
#include "layers/quant/binary_linear_op.h"
#include "layers/quant/quant_act.h"
#include "layers/quant/quant_linear.h"
#include "layers/quant/shift_batchnorm.h"

namespace qnn {

namespace k = kernels;

namespace {

using Leaf = std::pair<std::string, Module*>;

void collect_leaves(Module& m, const std::string& prefix, std::vector<Leaf>& out) {
  if (m.children().empty()) {
    out.emplace_back(prefix.empty() ? std::string("0") : prefix, &m);
    return;
  }
  for (const auto& [name, c] : m.children()) collect_leaves(*c, prefix.empty() ? name : prefix + "." + name, out);
}

std::string where(const Leaf& l) { return "layer '" + l.first + "' (" + l.second->type_name() + ")"; }

bool skippable(Module* m) { return dynamic_cast<Dropout*>(m) || dynamic_cast<Flatten*>(m); }

// A quantizer whose eval-mode output is sign(x) in {-1, +1} with sign(0) = +1.
bool sign_like(const Quantizer* q) { return q && q->bits() == 1 && q->scale() == 1.0f; }

bool quantizes(const Quantizer* q) { return q && !q->is_identity(); }

// The eval-mode arithmetic of a quantizer the runner reproduces for k-bit
// products (kernels/level_planes.h): Sign and StochasticSign (whose eval mode
// is Sign) are {1, 1}, Uniform is {bits, a} for 1..16 bits. Nothing for
// other (unknown) quantizer classes or the identity.
std::optional<QuantGeometry> level_geometry(const Quantizer* q) {
  if (!quantizes(q)) return std::nullopt;
  const std::string n = q->name();
  if (n == "sign" || n == "stochastic_sign") return QuantGeometry{1, 1.0f};
  if (n == "uniform" && q->bits() >= 1 && q->bits() <= 16) return QuantGeometry{q->bits(), q->scale()};
  return std::nullopt;
}

std::string unknown_quantizer(const Leaf& l, const Quantizer& q) {
  return "export: " + where(l) + " uses the quantizer " + q.str() +
         ", which export cannot reproduce (it knows sign, stochastic_sign — as its eval-mode sign — and uniform "
         "with 1..16 bits)";
}

bool is_batchnorm(Module* m) { return dynamic_cast<BatchNorm*>(m) != nullptr; }

// Per-channel eval affine map of a (shift) batch norm layer, with the exact
// float arithmetic of its forward pass.
ChannelAffine bn_affine(const BatchNorm& bn, int64_t c) {
  const float eps = bn.options().eps;
  const float g = bn.weight.defined() ? bn.weight.data()[c] : 1.0f;
  const float b = bn.bias.defined() ? bn.bias.data()[c] : 0.0f;
  const float rm = bn.running_mean.data()[c], rv = bn.running_var.data()[c];
  ChannelAffine a;
  if (const auto* sbn = dynamic_cast<const ShiftBatchNorm*>(&bn)) {
    // layers/quant/shift_batchnorm.cpp, evaluation: scale * (x - mean) + beta
    const auto R = [&](float v) { return sbn->ap2() ? qnn::ap2(v) : v; };
    const float inv = 1.0f / std::sqrt(rv + eps);
    const float s = R(inv);
    const float gp = bn.weight.defined() ? R(g) : 1.0f;
    a.center = rm;
    a.scale = gp * s;
    a.shift = b;
  } else {
    // core/ops_norm.cpp batch_norm, evaluation: batch_norm_apply(x, scale, shift)
    batch_norm_fold(g, b, rm, batch_norm_istd(rv, eps), a.scale, a.shift);
    a.center = 0.0f;  // (x - 0) * scale + shift == x * scale + shift, bit for bit
  }
  return a;
}

float apply_affine(float y, const ChannelAffine& a) { return batch_norm_apply(y - a.center, a.scale, a.shift); }

float y_of(int64_t V, bool pixels, bool has_bias, float bias) {
  float y = float(V);
  if (pixels) y = y / 256.0f;
  if (has_bias) y = y + bias;
  return y;
}

// The batch norm module's own eval forward on rows of y values [R, C].
std::vector<float> bn_forward(BatchNorm& bn, const std::vector<float>& y, int64_t rows) {
  const int64_t C = bn.channels();
  NoGradGuard ng;
  const bool was = bn.is_training();
  bn.train(false);
  Tensor out;
  try {
    out = bn.forward(Tensor::from_data({rows, C}, y.data()));
  } catch (...) {
    bn.train(was);
    throw;
  }
  bn.train(was);
  return std::vector<float>(out.data(), out.data() + rows * C);
}

struct Pending {
  BatchNorm* bn = nullptr;
  bool sign = false, relu = false;  // sign: folded into thresholds (binary products only)
  size_t next = 0;  // first leaf after the epilogue
};

}  // namespace

SignThreshold fold_sign_threshold(int64_t vmax, bool pixels, bool has_bias, float bias, const ChannelAffine& a) {
  QNN_CHECK(vmax >= 0 && vmax < (int64_t(1) << 24), "fold_sign_threshold: vmax out of range");
  QNN_CHECK(std::isfinite(a.center) && std::isfinite(a.scale) && std::isfinite(a.shift) &&
                (!has_bias || std::isfinite(bias)),
            "fold_sign_threshold: non-finite batch-norm parameters or bias (center " + std::to_string(a.center) +
                ", scale " + std::to_string(a.scale) + ", shift " + std::to_string(a.shift) +
                "): the sign after them cannot be folded into a threshold");
  // Sign's rule: -1 iff the value is < 0 (so 0 -> +1).
  auto P = [&](int64_t V) { return !(apply_affine(y_of(V, pixels, has_bias, bias), a) < 0.0f); };
  const int64_t lo0 = -vmax, hi0 = vmax;
  const bool plo = P(lo0), phi = P(hi0);
  SignThreshold r;
  if (plo == phi) {  // constant over the range: V >= lo0 always holds
    r.thresh = int32_t(lo0);
    r.flip = plo ? 0 : 1;
    return r;
  }
  // Monotone: find the first V whose predicate equals P(hi0).
  int64_t lo = lo0, hi = hi0;  // P(lo) != phi, P(hi) == phi
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (P(mid) == phi)
      hi = mid;
    else
      lo = mid;
  }
  r.thresh = int32_t(hi);
  r.flip = phi ? 0 : 1;  // increasing: +1 iff V >= T; decreasing: +1 iff V < T
  return r;
}

k::PackedModel export_model(Module& model, const ExportOptions& opt) {
  std::vector<Leaf> leaves;
  collect_leaves(model, "", leaves);
  k::PackedModel pm;
  pm.input_scale = opt.input_scale;

  enum class Act { input, real, packed };
  Act cur = Act::input;
  // A QuantAct on real activations (or on the input), applied by the next
  // product: as its sign input (binary weights) or as its levels_f32 input.
  const Quantizer* pending = nullptr;
  const Leaf* pending_leaf = nullptr;
  auto skip = [&](size_t j) {
    while (j < leaves.size() && skippable(leaves[j].second)) ++j;
    return j;
  };
  // A QuantLinear that multiplies +-1 inputs by +-1 weights given packed signs
  // (its own input quantizer, if any, is a sign: sign of +-1 is itself).
  auto binary_consumer = [&](size_t j) {
    auto* ql = j < leaves.size() ? dynamic_cast<QuantLinear*>(leaves[j].second) : nullptr;
    return ql && sign_like(ql->weight_quantizer().get()) &&
           (!quantizes(ql->input_quantizer().get()) || sign_like(ql->input_quantizer().get()));
  };
  // Can the sign at leaf j be folded into the binary product before it? Only
  // if what consumes it is itself a binary product (that takes packed signs).
  auto sign_follows_at = [&](size_t j) {
    if (j >= leaves.size()) return false;
    if (auto* qa = dynamic_cast<QuantAct*>(leaves[j].second))
      return sign_like(qa->quantizer().get()) && binary_consumer(skip(j + 1));
    if (auto* ql = dynamic_cast<QuantLinear*>(leaves[j].second))
      return sign_like(ql->input_quantizer().get()) && sign_like(ql->weight_quantizer().get());
    return false;
  };
  // Batch norm / sign / ReLU after the product at leaf i (out channels). The
  // sign is looked for only after a binary product; after any other product a
  // QuantAct stays in the chain and becomes the next product's `pending`.
  auto epilogue = [&](size_t i, int64_t out, bool binary) {
    Pending e;
    size_t j = skip(i + 1);
    if (j < leaves.size() && is_batchnorm(leaves[j].second)) {
      auto* bn = static_cast<BatchNorm*>(leaves[j].second);
      QNN_CHECK(bn->type_name() != "BatchNorm2d", "export: " + where(leaves[j]) + " needs [N, C, H, W] input; "
                                                  "export handles fully connected models");
      QNN_CHECK(bn->channels() == out, "export: " + where(leaves[j]) + " has " + std::to_string(bn->channels()) +
                                           " channels but follows a layer with " + std::to_string(out) + " outputs");
      e.bn = bn;
      j = skip(j + 1);
    }
    if (binary && sign_follows_at(j)) {
      e.sign = true;
      if (dynamic_cast<QuantAct*>(leaves[j].second)) ++j;  // consumed; a QuantLinear's quantizer is not
    } else if (j < leaves.size() && leaves[j].second->type_name() == "ReLU") {
      e.relu = true;
      ++j;
    }
    e.next = j;
    return e;
  };
  // y values of two rows [2 x C] where a float epilogue is checked against
  // the batch-norm module's own forward.
  auto check_affine = [&](const Leaf& leaf, const k::PackedLayer& L, const Pending& e, const std::vector<float>& ys) {
    if (!opt.verify || !e.bn) return;
    const int64_t C = L.out;
    const std::vector<float> z = bn_forward(*e.bn, ys, 2);
    for (int64_t q = 0; q < 2 * C; ++q) {
      const int64_t c = q % C;
      const float mine = (ys[q] - L.center[c]) * L.scale[c] + L.shift[c];
      QNN_CHECK(std::memcmp(&mine, &z[q], 4) == 0 || (std::isnan(mine) && std::isnan(z[q])),
                "export: internal check failed: " + where(leaf) + " channel " + std::to_string(c) +
                    ": the folded affine map disagrees with " + e.bn->type_name() + "'s own forward");
    }
  };
  // Real-valued sample outputs of a float product, for check_affine.
  auto sample_ys = [](int64_t C) {
    std::vector<float> ys(2 * C);
    for (int64_t c = 0; c < C; ++c) {
      ys[c] = 0.37f * float(c % 7 - 3) + 0.11f;
      ys[C + c] = -2.5f + 0.013f * float(c);
    }
    return ys;
  };
  auto float_epilogue = [&](k::PackedLayer& L, const Pending& e) {
    L.relu = e.relu;
    if (!e.bn) return;
    L.affine = true;
    L.center.resize(L.out), L.scale.resize(L.out), L.shift.resize(L.out);
    for (int64_t c = 0; c < L.out; ++c) {
      const ChannelAffine a = bn_affine(*e.bn, c);
      L.center[c] = a.center, L.scale[c] = a.scale, L.shift[c] = a.shift;
    }
  };
  auto copy_bias = [&](const Tensor& b, int64_t out) {
    std::vector<float> v;
    if (b.defined()) {
      QNN_CHECK(b.numel() == out, "export: bias has " + std::to_string(b.numel()) + " values, expected " + std::to_string(out));
      v.assign(b.data(), b.data() + out);
    }
    return v;
  };
  auto pending_str = [&]() { return where(*pending_leaf) + " (" + pending->str() + ")"; };
  // A product with float outputs (dense_f32, dense_levels) at leaf i: bias,
  // the batch norm / ReLU after it as a float epilogue (checked), appended;
  // returns the index of the next leaf to export.
  auto finish_float_layer = [&](const Leaf& leaf, size_t i, k::PackedLayer&& L, const Tensor& bias) {
    L.bias = copy_bias(bias, L.out);
    const Pending e = epilogue(i, L.out, false);
    float_epilogue(L, e);
    check_affine(leaf, L, e, sample_ys(L.out));
    cur = Act::real;
    pm.layers.push_back(std::move(L));
    return skip(e.next);
  };

  size_t i = skip(0);
  while (i < leaves.size()) {
    const Leaf& leaf = leaves[i];
    Module* m = leaf.second;
    auto* ql = dynamic_cast<QuantLinear*>(m);
    auto* lin = dynamic_cast<Linear*>(m);
    const Quantizer* wq = ql ? ql->weight_quantizer().get() : nullptr;
    const Quantizer* iq = ql ? ql->input_quantizer().get() : nullptr;
    if (ql) {
      // Quantizers whose eval arithmetic the runner reproduces: sign-like
      // ones for the binary products, Sign / StochasticSign (eval: Sign) /
      // Uniform{1..16, a} for the k-bit ones.
      for (const Quantizer* q : {wq, iq})
        if (quantizes(q) && !sign_like(q) && !level_geometry(q)) fail(unknown_quantizer(leaf, *q));
      QNN_CHECK(quantizes(wq) || !quantizes(iq),
                "export: " + where(leaf) + " multiplies inputs quantized by " + (iq ? iq->str() : std::string()) +
                    " by full-precision weights; not supported");
      if (pending && quantizes(iq) && !(sign_like(iq) && sign_like(pending)))
        fail("export: " + where(leaf) + " quantizes its input with " + iq->str() + " right after " + pending_str() +
             "; two activation quantizers in a row are not supported");
    }
    const bool pending_kbit = pending && !sign_like(pending);
    if (ql && sign_like(wq) && (sign_like(iq) || (!quantizes(iq) && !pending_kbit))) {
      // ---- binary product ----
      k::PackedLayer L;
      L.type = k::LayerType::dense_binary;
      L.in = ql->in_features();
      L.out = ql->out_features();
      if (cur == Act::packed) {
        L.input = k::LayerInput::packed;
      } else if (sign_like(iq) || pending) {
        L.input = k::LayerInput::sign;
      } else if (cur == Act::input) {
        QNN_CHECK(opt.input_scale == k::InputScale::odd_over_256,
                  "export: " + where(leaf) + " has binary weights and real (pixel) input; exact export computes it "
                  "on 8-bit pixels and needs the input scaling (2p-255)/256 (PixelScale::OddOver256), not " +
                      std::string(k::input_scale_name(opt.input_scale)));
        L.input = k::LayerInput::pixels8;
      } else {
        fail("export: " + where(leaf) + " has binary weights but real-valued (non-pixel) input; quantize it "
             "(QuantAct or an input quantizer)");
      }
      pending = nullptr;
      const Tensor& w = ql->weight;
      QNN_CHECK(w.numel() == L.in * L.out, "export: " + where(leaf) + " weight has the wrong size");
      // Sign of the latent weights, sign(0) = +1: exactly the bit rule of kernels/bitpack.h.
      L.w_bits = k::make_packed(L.out, L.in);
      k::pack_rows(w.data(), L.out, L.in, L.in, L.w_bits.data());
      const std::vector<float> bias = copy_bias(ql->bias, L.out);
      const Pending e = epilogue(i, L.out, true);
      const bool pix = L.input == k::LayerInput::pixels8;
      const int64_t vmax = pix ? 255 * L.in : L.in;
      if (e.sign) {
        L.sign_out = true;
        L.thresh.resize(L.out);
        L.flip.resize(L.out);
        for (int64_t c = 0; c < L.out; ++c) {
          const ChannelAffine a = e.bn ? bn_affine(*e.bn, c) : ChannelAffine{};
          SignThreshold st;
          try {
            st = fold_sign_threshold(vmax, pix, !bias.empty(), bias.empty() ? 0.f : bias[c], a);
          } catch (const Error& err) {
            fail("export: " + where(leaf) + ", output channel " + std::to_string(c) + ": " + err.what());
          }
          L.thresh[c] = st.thresh;
          L.flip[c] = st.flip;
        }
        if (opt.verify && e.bn) {
          // Check the fold against the batch-norm module itself at V = -vmax, T-1, T, vmax.
          const int64_t C = L.out;
          std::vector<int64_t> Vs(4 * C);
          std::vector<float> ys(4 * C);
          for (int64_t c = 0; c < C; ++c) {
            const int64_t T = L.thresh[c];
            const int64_t cand[4] = {-vmax, std::max(-vmax, T - 1), std::min(vmax, std::max(-vmax, T)), vmax};
            for (int r = 0; r < 4; ++r) {
              Vs[r * C + c] = cand[r];
              ys[r * C + c] = y_of(cand[r], pix, !bias.empty(), bias.empty() ? 0.f : bias[c]);
            }
          }
          const std::vector<float> z = bn_forward(*e.bn, ys, 4);
          for (int64_t q = 0; q < 4 * C; ++q) {
            const int64_t c = q % C;
            const bool want = !(z[q] < 0.0f);
            const bool got = (Vs[q] >= L.thresh[c]) != (L.flip[c] != 0);
            QNN_CHECK(want == got, "export: internal check failed: " + where(leaf) + " channel " + std::to_string(c) +
                                       ": the folded threshold disagrees with " + e.bn->type_name() +
                                       "'s own forward at V = " + std::to_string(Vs[q]));
          }
        }
        cur = Act::packed;
      } else {
        L.bias = bias;
        float_epilogue(L, e);
        std::vector<float> ys(2 * L.out);
        for (int64_t c = 0; c < L.out; ++c) {
          ys[c] = y_of(-vmax / 3, pix, !bias.empty(), bias.empty() ? 0.f : bias[c]);
          ys[L.out + c] = y_of(vmax / 5, pix, !bias.empty(), bias.empty() ? 0.f : bias[c]);
        }
        check_affine(leaf, L, e, ys);
        cur = Act::real;
      }
      pm.layers.push_back(std::move(L));
      i = skip(e.next);
      continue;
    }
    if (ql && quantizes(wq)) {
      // ---- k-bit product (dense_levels) ----
      // The arithmetic of QuantLinear's eval forward (quant_linear.h kernel
      // paths): both operands uniform and the sums exact -> uniform_linear
      // (input levels); otherwise linear(x or its quantized floats, wq, b)
      // (input real / levels_f32).
      QNN_CHECK(cur != Act::packed, "export: " + where(leaf) + " has k-bit weights but its input is packed signs; "
                                    "not supported");
      const QuantGeometry gw = *level_geometry(wq);
      k::PackedLayer L;
      L.type = k::LayerType::dense_levels;
      L.in = ql->in_features();
      L.out = ql->out_features();
      L.wbits = gw.bits;
      L.w_alpha = gw.a;
      if (quantizes(iq)) {
        const auto gi = level_geometry(iq);
        QNN_CHECK(gi.has_value(), "export: " + where(leaf) + " quantizes its input with " + iq->str() +
                                      ", which export cannot reproduce with k-bit weights");
        L.input = uniform_linear_exact(L.in, gi->bits, gw.bits) ? k::LayerInput::levels : k::LayerInput::levels_f32;
        L.in_bits = gi->bits;
        L.in_alpha = gi->a;
      } else if (pending) {
        const auto gi = level_geometry(pending);
        QNN_CHECK(gi.has_value(), "export: " + pending_str() + " before " + where(leaf) +
                                      " is a quantizer export cannot reproduce");
        L.input = k::LayerInput::levels_f32;  // linear(QuantAct's floats, wq, b)
        L.in_bits = gi->bits;
        L.in_alpha = gi->a;
      } else {
        L.input = k::LayerInput::real;  // linear(x, wq, b): a first layer, or real activations
      }
      pending = nullptr;
      const Tensor& w = ql->weight;
      QNN_CHECK(w.numel() == L.in * L.out, "export: " + where(leaf) + " weight has the wrong size");
      // The levels the weight quantizer chooses, k bits each (kernels/level_planes.h).
      L.w_planes = k::PackedVector((size_t)k::plane_packed_words(L.out, L.in, L.wbits));
      k::pack_level_planes(w.data(), L.out, L.in, L.wbits, L.w_alpha, L.w_planes.data());
      if (opt.verify) {
        // The decoded weights must be the quantizer's own eval output, bit for bit.
        Quantizer& q = *ql->weight_quantizer();
        const bool was = q.is_training();
        q.train(false);
        Tensor wref;
        {
          NoGradGuard ng;
          wref = q(w);
        }
        q.train(was);
        const std::vector<float> dec = L.level_weights();
        QNN_CHECK(std::memcmp(dec.data(), wref.data(), dec.size() * sizeof(float)) == 0,
                  "export: internal check failed: " + where(leaf) + ": the stored " + std::to_string(L.wbits) +
                      "-bit weight levels do not decode to " + q.str() + "'s output");
      }
      i = finish_float_layer(leaf, i, std::move(L), ql->bias);
      continue;
    }
    if (lin || ql) {
      // ---- full-precision product ----
      QNN_CHECK(cur != Act::packed, "export: " + where(leaf) +
                                        " is full precision but its input is binarized activations; not supported");
      QNN_CHECK(!pending, "export: " + where(leaf) + " is full precision but its input went through " + pending_str() +
                              "; not supported");
      k::PackedLayer L;
      L.type = k::LayerType::dense_f32;
      L.input = k::LayerInput::real;
      const Tensor& w = lin ? lin->weight : ql->weight;
      L.in = lin ? lin->in_features() : ql->in_features();
      L.out = lin ? lin->out_features() : ql->out_features();
      QNN_CHECK(w.numel() == L.in * L.out, "export: " + where(leaf) + " weight has the wrong size");
      L.w_f32.assign(w.data(), w.data() + L.in * L.out);
      i = finish_float_layer(leaf, i, std::move(L), lin ? lin->bias : ql->bias);
      continue;
    }
    if (auto* qa = dynamic_cast<QuantAct*>(m)) {
      const Quantizer* q = qa->quantizer().get();
      if (quantizes(q)) {
        if (!sign_like(q) && !level_geometry(q)) fail(unknown_quantizer(leaf, *q));
        if (cur == Act::packed) {
          // Only a sign can follow folded signs (sign_follows_at); sign of +-1 is itself.
          QNN_CHECK(sign_like(q), "export: " + where(leaf) + " quantizes signs that were already packed; not supported");
        } else if (pending) {
          QNN_CHECK(sign_like(q) && sign_like(pending), "export: " + where(leaf) + " right after " + pending_str() +
                                                            ": two activation quantizers in a row are not supported");
        } else {
          pending = q;
          pending_leaf = &leaf;
        }
      }
      i = skip(i + 1);
      continue;
    }
    if (is_batchnorm(m)) fail("export: " + where(leaf) + " does not follow a linear layer; cannot be folded");
    fail("export: " + where(leaf) + " is not supported; export supports fp, bnn and k-bit (qnn) models made of "
         "Linear / QuantLinear (sign or uniform quantizers), BatchNorm1d / ShiftBatchNorm1d, ReLU, QuantAct, Dropout "
         "and Flatten");
  }
  QNN_CHECK(!pm.layers.empty(), "export: the model has no linear layers");
  QNN_CHECK(!pending && cur != Act::packed,
            "export: the model ends in a sign or activation quantizer; the last layer must produce logits (e.g. "
            "QuantLinear -> BatchNorm1d)");
  pm.input_dims = opt.input_dims.empty() ? std::vector<int64_t>{pm.layers.front().in} : opt.input_dims;
  try {
    pm.validate("export");
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
  return pm;
}

int64_t export_model_file(Module& model, const std::string& path, const ExportOptions& opt) {
  const k::PackedModel pm = export_model(model, opt);
  std::string bytes;
  try {
    bytes = pm.to_bytes();
  } catch (const std::invalid_argument& e) {
    fail(std::string(e.what()) + " (writing '" + path + "')");
  }
  write_file_atomic(path, bytes);
  return (int64_t)bytes.size();
}

}  // namespace qnn
