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
#include "layers/conv.h"
#include "layers/linear.h"
#include "layers/pool.h"
#include "layers/quant/binary_linear_op.h"
#include "layers/quant/quant_act.h"
#include "layers/quant/quant_conv.h"
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
  // The .qnnx format is a chain of layers: a container that computes more
  // than its children in turn (Residual's add) cannot be flattened into one.
  QNN_CHECK(dynamic_cast<Sequential*>(&m) != nullptr,
            "export: layer '" + (prefix.empty() ? std::string("0") : prefix) + "' (" + m.type_name() +
                ") is not a chain of layers; the .qnnx format holds only sequential models");
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
// BatchNorm2d / ShiftBatchNorm2d: takes [N, C, H, W].
bool is_bn2d(const BatchNorm& bn) {
  const std::string t = bn.type_name();
  return t.size() >= 2 && t.compare(t.size() - 2, 2, "2d") == 0;
}

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
    const Shape sh = is_bn2d(bn) ? Shape{rows, C, 1, 1} : Shape{rows, C};
    out = bn.forward(Tensor::from_data(sh, y.data()));
  } catch (...) {
    bn.train(was);
    throw;
  }
  bn.train(was);
  return std::vector<float>(out.data(), out.data() + rows * C);
}

struct Pending {
  BatchNorm* bn = nullptr;
  MaxPool2d* pool = nullptr;  // conv only: a max-pool of the sums before the batch norm
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
  // The activation's map [C, H, W] while it is spatial (conv / pool layers);
  // empty after a dense layer.
  std::vector<int64_t> shape = opt.input_dims.size() == 3 ? opt.input_dims : std::vector<int64_t>{};
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
    if (auto* qc = j < leaves.size() ? dynamic_cast<QuantConv2d*>(leaves[j].second) : nullptr)
      return sign_like(qc->weight_quantizer().get()) &&
             (!quantizes(qc->input_quantizer().get()) || sign_like(qc->input_quantizer().get()));
    auto* ql = j < leaves.size() ? dynamic_cast<QuantLinear*>(leaves[j].second) : nullptr;
    return ql && sign_like(ql->weight_quantizer().get()) &&
           (!quantizes(ql->input_quantizer().get()) || sign_like(ql->input_quantizer().get()));
  };
  // Can the sign at leaf j be folded into the binary product before it? Only
  // if what consumes it is itself a binary product (that takes packed signs).
  // A max-pool between the sign and its consumer (FINN's CNV: BN -> sign ->
  // max-pool) is looked through: max-pool commutes with the monotone sign,
  // and becomes a max_pool layer on the packed signs.
  auto sign_follows_at = [&](size_t j) {
    while (j < leaves.size() && dynamic_cast<MaxPool2d*>(leaves[j].second)) j = skip(j + 1);
    if (j >= leaves.size()) return false;
    if (auto* qc = dynamic_cast<QuantConv2d*>(leaves[j].second))
      return sign_like(qc->input_quantizer().get()) && sign_like(qc->weight_quantizer().get());
    if (auto* qa = dynamic_cast<QuantAct*>(leaves[j].second))
      return sign_like(qa->quantizer().get()) && binary_consumer(skip(j + 1));
    if (auto* ql = dynamic_cast<QuantLinear*>(leaves[j].second))
      return sign_like(ql->input_quantizer().get()) && sign_like(ql->weight_quantizer().get());
    return false;
  };
  // Batch norm / sign / ReLU after the product at leaf i (out channels). The
  // sign is looked for only after a binary product; after any other product a
  // QuantAct stays in the chain and becomes the next product's `pending`.
  auto epilogue = [&](size_t i, int64_t out, bool binary, bool spatial = false) {
    Pending e;
    size_t j = skip(i + 1);
    if (spatial && j < leaves.size()) {
      if ((e.pool = dynamic_cast<MaxPool2d*>(leaves[j].second))) j = skip(j + 1);  // conv -> max-pool -> BN
    }
    if (j < leaves.size() && is_batchnorm(leaves[j].second)) {
      auto* bn = static_cast<BatchNorm*>(leaves[j].second);
      QNN_CHECK(is_bn2d(*bn) == spatial, "export: " + where(leaves[j]) + " follows a " +
                                             (spatial ? "convolution; it needs BatchNorm2d" : "dense layer; it needs BatchNorm1d"));
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
    const int64_t C = L.channels();
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
    const int64_t C = L.channels();
    L.center.resize(C), L.scale.resize(C), L.shift.resize(C);
    for (int64_t c = 0; c < C; ++c) {
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
  // The stored k-bit weights of L must decode to the quantizer q's own eval
  // output for the latent weights w, bit for bit.
  auto verify_levels = [&](const Leaf& leaf, Quantizer& q, const Tensor& w, const k::PackedLayer& L) {
    if (!opt.verify) return;
    const bool was = q.is_training();
    q.train(false);
    Tensor wref;
    {
      NoGradGuard ng;
      wref = q(w);
    }
    q.train(was);
    const std::vector<float> dec = L.level_weights();
    QNN_CHECK((int64_t)dec.size() == wref.numel() &&
                  std::memcmp(dec.data(), wref.data(), dec.size() * sizeof(float)) == 0,
              "export: internal check failed: " + where(leaf) + ": the stored " + std::to_string(L.wbits) +
                  "-bit weight levels do not decode to " + q.str() + "'s output");
  };
  // A product with float outputs (dense_f32, dense_levels) at leaf i: bias,
  // the batch norm / ReLU after it as a float epilogue (checked), appended;
  // returns the index of the next leaf to export.
  auto finish_float_layer = [&](const Leaf& leaf, size_t i, k::PackedLayer&& L, const Tensor& bias) {
    L.bias = copy_bias(bias, L.out);
    const Pending e = epilogue(i, L.out, false);
    float_epilogue(L, e);
    check_affine(leaf, L, e, sample_ys(L.out));
    cur = Act::real;
    shape.clear();
    pm.layers.push_back(std::move(L));
    return skip(e.next);
  };

  // The batch norm + sign after a binary product (dense or conv) as one
  // integer threshold + flip per output channel (C = L.channels()), checked
  // against the batch-norm module's own forward.
  auto fold_signs = [&](const Leaf& leaf, k::PackedLayer& L, const Pending& e, const std::vector<float>& bias,
                        int64_t vmax, bool pix) {
    const int64_t C = L.channels();
    L.sign_out = true;
    L.thresh.resize(C);
    L.flip.resize(C);
    for (int64_t c = 0; c < C; ++c) {
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
    auto* qc = dynamic_cast<QuantConv2d*>(m);
    auto* cv = dynamic_cast<Conv2d*>(m);
    if (qc || cv) {
      // ---- convolution: conv_binary (+-1 weights) or conv_f32 ----
      QNN_CHECK(shape.size() == 3,
                "export: " + where(leaf) + (pm.layers.empty() ? std::string(" needs the model's input map: pass ExportOptions::input_dims = {C, H, W}")
                                                              : std::string(" follows a dense layer; not supported")));
      const Quantizer* cwq = qc ? qc->weight_quantizer().get() : nullptr;
      const Quantizer* ciq = qc ? qc->input_quantizer().get() : nullptr;
      const int64_t cin = qc ? qc->in_channels() : cv->in_channels();
      QNN_CHECK(cin == shape[0], "export: " + where(leaf) + " takes " + std::to_string(cin) + " channels but its input has " +
                                     std::to_string(shape[0]));
      k::PackedLayer L;
      k::SpatialGeom& g = L.geom;
      g.C = shape[0], g.H = shape[1], g.W = shape[2];
      g.O = qc ? qc->out_channels() : cv->out_channels();
      g.K = qc ? qc->kernel() : cv->kernel();
      g.stride = qc ? qc->options().stride : cv->options().stride;
      g.pad = qc ? qc->options().pad : cv->options().pad;
      QNN_CHECK(g.H + 2 * g.pad >= g.K && g.W + 2 * g.pad >= g.K,
                "export: " + where(leaf) + ": the window is larger than its padded input map");
      for (const Quantizer* q : {cwq, ciq})
        if (quantizes(q) && !sign_like(q) && !level_geometry(q)) fail(unknown_quantizer(leaf, *q));
      QNN_CHECK(quantizes(cwq) || (!quantizes(ciq) && !pending),
                "export: " + where(leaf) + " multiplies quantized inputs by full-precision weights; not supported");
      if (pending && quantizes(ciq))
        fail("export: " + where(leaf) + " quantizes its input with " + ciq->str() + " right after " + pending_str() +
             "; two activation quantizers in a row are not supported");
      const Tensor& w = qc ? qc->weight : cv->weight;
      const int64_t taps = g.taps();
      QNN_CHECK(w.numel() == g.O * taps, "export: " + where(leaf) + " weight has the wrong size");
      const std::vector<float> bias = copy_bias(qc ? qc->bias : cv->bias, g.O);
      // Binary: +-1 weights on +-1 inputs (or on the image); any other
      // quantized weight is a k-bit convolution (conv_levels).
      const bool binary = sign_like(cwq) && (!quantizes(ciq) || sign_like(ciq)) && (!pending || sign_like(pending));
      if (!binary && quantizes(cwq)) {
        // ---- k-bit convolution (conv_levels), in the arithmetic of
        // QuantConv2d's eval forward (quant_conv.h): the levels path's exact
        // integer sums, or conv2d on the (input quantizer's) floats ----
        QNN_CHECK(cur != Act::packed, "export: " + where(leaf) + " has k-bit weights but its input is packed signs; "
                                      "not supported");
        const QuantGeometry gw = *level_geometry(cwq);
        L.type = k::LayerType::conv_levels;
        L.wbits = gw.bits;
        L.w_alpha = gw.a;
        const QuantKernelPath path = qc->kernel_path();
        if (quantizes(ciq)) {
          const auto gi = level_geometry(ciq);
          QNN_CHECK(gi.has_value(), "export: " + where(leaf) + " quantizes its input with " + ciq->str() +
                                        ", which export cannot reproduce with k-bit weights");
          L.in_bits = gi->bits;
          L.in_alpha = gi->a;
          if (path == QuantKernelPath::levels) {
            L.input = k::LayerInput::levels;  // exact integer sums (one-padding, or no padding)
            g.pad_one = g.pad > 0 && qc->pad_value() != 0.0f;
          } else if (path == QuantKernelPath::none && qc->pad_value() == 0.0f) {
            L.input = k::LayerInput::levels_f32;  // conv2d(q_in(x), q_w(W)): zero padding
          } else {
            fail("export: " + where(leaf) + " pads with its input quantizer's top level but its sums are too wide to "
                 "be exact integers (" + std::to_string(taps) + " taps at " + std::to_string(gi->bits) + " x " +
                 std::to_string(gw.bits) + " bits); not supported");
          }
        } else {
          QNN_CHECK(path == QuantKernelPath::none,
                    "export: " + where(leaf) + " has +-1 weights on real-valued input that is not the image; export "
                    "needs it quantized (an input quantizer) or the model's first layer");
          if (pending) {
            const auto gi = level_geometry(pending);
            QNN_CHECK(gi.has_value(), "export: " + pending_str() + " before " + where(leaf) +
                                          " is a quantizer export cannot reproduce");
            L.input = k::LayerInput::levels_f32;  // conv2d(QuantAct's floats, q_w(W))
            L.in_bits = gi->bits;
            L.in_alpha = gi->a;
          } else {
            L.input = k::LayerInput::real;  // conv2d(x, q_w(W)): the image, or real activations
          }
        }
        pending = nullptr;
        // The levels the weight quantizer chooses, k bits each, rows in (c, ky, kx) order.
        L.w_planes = k::PackedVector((size_t)k::plane_packed_words(g.O, taps, L.wbits));
        k::pack_level_planes(w.data(), g.O, taps, L.wbits, L.w_alpha, L.w_planes.data());
        verify_levels(leaf, *qc->weight_quantizer(), w, L);
      } else if (binary) {
        L.type = k::LayerType::conv_binary;
        if (cur == Act::packed || pending) {
          // Signs: folded into the previous product's thresholds (packed) —
          // a pending QuantAct(Sign) on real activations is not (refused below).
          QNN_CHECK(cur == Act::packed, "export: " + where(leaf) + " binarizes real-valued activations (" +
                                            pending_str() + "); export needs the sign folded into the layer before "
                                            "(conv -> [max-pool] -> batch norm -> sign)");
          L.input = k::LayerInput::packed;
          g.pad_one = g.pad > 0 && qc->pad_value() != 0.0f;
        } else if (cur == Act::input && !quantizes(ciq)) {
          QNN_CHECK(opt.input_scale == k::InputScale::odd_over_256,
                    "export: " + where(leaf) + " has binary weights and the image as input; exact export computes it "
                    "on 8-bit pixels and needs the input scaling (2p-255)/256 (PixelScale::OddOver256), not " +
                        std::string(k::input_scale_name(opt.input_scale)));
          L.input = k::LayerInput::pixels8;
        } else {
          fail("export: " + where(leaf) + " has binary weights but real-valued input that is not the image (" +
               (quantizes(ciq) ? "its sign input quantizer on real activations" : "no quantizer") +
               "); export needs the sign folded into the layer before (conv -> [max-pool] -> batch norm -> sign)");
        }
        pending = nullptr;
        // Sign of the latent weights, sign(0) = +1, rows in (c, ky, kx) order.
        L.w_bits = k::make_packed(g.O, taps);
        k::pack_rows(w.data(), g.O, taps, taps, L.w_bits.data());
      } else {
        QNN_CHECK(cur != Act::packed, "export: " + where(leaf) +
                                          " is full precision but its input is binarized activations; not supported");
        L.type = k::LayerType::conv_f32;
        L.input = k::LayerInput::real;
        L.w_f32.assign(w.data(), w.data() + g.O * taps);
      }
      const Pending e = epilogue(i, g.O, binary, true);
      if (e.pool) {
        g.pool_k = e.pool->kernel();
        g.pool_s = e.pool->stride();
        QNN_CHECK(g.OH() >= g.pool_k && g.OW() >= g.pool_k, "export: " + where(leaf) + ": the max-pool window is larger "
                                                                                          "than the conv's output");
      }
      L.in = g.C * g.H * g.W;
      L.out = g.O * L.out_h() * L.out_w();
      const bool pix = L.input == k::LayerInput::pixels8;
      const int64_t vmax = pix ? 255 * taps : taps;
      if (binary && e.sign) {
        fold_signs(leaf, L, e, bias, vmax, pix);
        cur = Act::packed;
      } else {
        L.bias = bias;
        float_epilogue(L, e);
        std::vector<float> ys = sample_ys(g.O);
        if (binary)
          for (int64_t c = 0; c < g.O; ++c) {
            ys[c] = y_of(-vmax / 3, pix, !bias.empty(), bias.empty() ? 0.f : bias[c]);
            ys[g.O + c] = y_of(vmax / 5, pix, !bias.empty(), bias.empty() ? 0.f : bias[c]);
          }
        check_affine(leaf, L, e, ys);
        cur = Act::real;
      }
      shape = {g.O, L.out_h(), L.out_w()};
      pm.layers.push_back(std::move(L));
      i = skip(e.next);
      continue;
    }
    if (auto* mp = dynamic_cast<MaxPool2d*>(m)) {
      // ---- a max-pool after the activation (FINN's CNV order) ----
      QNN_CHECK(shape.size() == 3 && !pm.layers.empty(),
                "export: " + where(leaf) + " must follow a convolution (its input map is unknown here)");
      QNN_CHECK(!pending, "export: " + where(leaf) + " pools real values after " + pending_str() +
                              "; export needs the sign folded into the layer before");
      k::PackedLayer L;
      L.type = k::LayerType::max_pool;
      L.input = cur == Act::packed ? k::LayerInput::packed : k::LayerInput::real;
      k::SpatialGeom& g = L.geom;
      g.C = shape[0], g.H = shape[1], g.W = shape[2];
      g.pool_k = mp->kernel(), g.pool_s = mp->stride();
      QNN_CHECK(g.H >= g.pool_k && g.W >= g.pool_k, "export: " + where(leaf) + ": the window is larger than its input map");
      L.in = g.C * g.H * g.W;
      L.out = g.C * L.out_h() * L.out_w();
      shape = {g.C, L.out_h(), L.out_w()};
      pm.layers.push_back(std::move(L));
      i = skip(i + 1);
      continue;
    }
    if (dynamic_cast<AvgPool2d*>(m))
      fail("export: " + where(leaf) + ": average pooling is not supported by export (no model of apps/common uses it)");
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
        fold_signs(leaf, L, e, bias, vmax, pix);
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
      shape.clear();
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
      verify_levels(leaf, *ql->weight_quantizer(), w, L);
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
         "Linear / QuantLinear, Conv2d / QuantConv2d (sign or uniform quantizers), MaxPool2d, "
         "BatchNorm1d / 2d, ShiftBatchNorm1d / 2d, ReLU, QuantAct, Dropout and Flatten");
  }
  QNN_CHECK(!pm.layers.empty(), "export: the model has no linear layers");
  QNN_CHECK(!pending && cur != Act::packed,
            "export: the model ends in a sign or activation quantizer; the last layer must produce logits (e.g. "
            "QuantLinear -> BatchNorm1d)");
  pm.input_dims = opt.input_dims.empty() ? std::vector<int64_t>{pm.layers.front().in} : opt.input_dims;
  QNN_CHECK(!pm.layers.back().spatial(), "export: the model ends in a conv / pool layer; the last layer must be a "
                                         "dense layer giving logits");
  pm.meta = opt.meta;  // validate() below refuses metadata that is too long or not UTF-8
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
