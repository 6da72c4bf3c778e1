// layers/quant/export.cpp — Module -> kernels::PackedModel (see export.h).
#include "layers/quant/export.h"

#include <cmath>
#include <cstring>
#include <memory>

#include "core/ap2.h"
#include "core/autograd.h"
#include "core/fileio.h"
#include "core/ops.h"
#include "kernels/bitpack.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"
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

[[noreturn]] void refuse_kbit(const Leaf& l, const std::string& what, const Quantizer& q) {
  fail("export supports fp and bnn models: " + where(l) + " has " + what + " quantized by " + q.str() + " (" +
       std::to_string(q.bits()) + "-bit); k-bit (qnn) export is not implemented");
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
  bool sign = false, relu = false;
  bool sign_is_act = false;  // the sign is a QuantAct leaf (consumed), not the next layer's quantizer
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
  bool pending_sign = false;  // a QuantAct(Sign) on real activations, applied by the next binary layer
  auto skip = [&](size_t j) {
    while (j < leaves.size() && skippable(leaves[j].second)) ++j;
    return j;
  };
  auto sign_follows_at = [&](size_t j) {
    if (j >= leaves.size()) return false;
    if (auto* qa = dynamic_cast<QuantAct*>(leaves[j].second)) return sign_like(qa->quantizer().get());
    if (auto* ql = dynamic_cast<QuantLinear*>(leaves[j].second))
      return sign_like(ql->input_quantizer().get()) && sign_like(ql->weight_quantizer().get());
    return false;
  };
  // Batch norm / sign / ReLU after the product at leaf i (out channels).
  auto epilogue = [&](size_t i, int64_t out) {
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
    if (sign_follows_at(j)) {
      e.sign = true;
      if (dynamic_cast<QuantAct*>(leaves[j].second)) {  // consumed; a QuantLinear's quantizer is not
        e.sign_is_act = true;
        ++j;
      }
    } else if (j < leaves.size() && leaves[j].second->type_name() == "ReLU") {
      e.relu = true;
      ++j;
    }
    e.next = j;
    return e;
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

  size_t i = skip(0);
  while (i < leaves.size()) {
    const Leaf& leaf = leaves[i];
    Module* m = leaf.second;
    auto* ql = dynamic_cast<QuantLinear*>(m);
    auto* lin = dynamic_cast<Linear*>(m);
    if (ql) {
      const Quantizer* wq = ql->weight_quantizer().get();
      const Quantizer* iq = ql->input_quantizer().get();
      if (wq && !wq->is_identity() && !sign_like(wq)) refuse_kbit(leaf, "weights", *wq);
      if (iq && !iq->is_identity() && !sign_like(iq)) refuse_kbit(leaf, "inputs", *iq);
      if (!sign_like(wq))  // full-precision weights: handled below as a dense_f32 product
        QNN_CHECK(!sign_like(iq), "export: " + where(leaf) +
                                      " multiplies binarized inputs by full-precision weights; not supported");
    }
    if (ql && sign_like(ql->weight_quantizer().get())) {
      // ---- binary product ----
      k::PackedLayer L;
      L.type = k::LayerType::dense_binary;
      L.in = ql->in_features();
      L.out = ql->out_features();
      if (cur == Act::packed) {
        L.input = k::LayerInput::packed;
      } else if (sign_like(ql->input_quantizer().get()) || pending_sign) {
        L.input = k::LayerInput::sign;
      } else if (cur == Act::input) {
        QNN_CHECK(opt.input_scale == k::InputScale::odd_over_256,
                  "export: " + where(leaf) + " has binary weights and real (pixel) input; exact export computes it "
                  "on 8-bit pixels and needs the input scaling (2p-255)/256 (PixelScale::OddOver256), not " +
                      std::string(k::input_scale_name(opt.input_scale)));
        L.input = k::LayerInput::pixels8;
      } else {
        fail("export: " + where(leaf) + " has binary weights but real-valued (non-pixel) input; binarize it "
             "(QuantAct or an input quantizer) — export supports fp and bnn models");
      }
      pending_sign = false;
      const Tensor& w = ql->weight;
      QNN_CHECK(w.numel() == L.in * L.out, "export: " + where(leaf) + " weight has the wrong size");
      // Sign of the latent weights, sign(0) = +1: exactly the bit rule of kernels/bitpack.h.
      L.w_bits = k::make_packed(L.out, L.in);
      k::pack_rows(w.data(), L.out, L.in, L.in, L.w_bits.data());
      const std::vector<float> bias = copy_bias(ql->bias, L.out);
      const Pending e = epilogue(i, L.out);
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
        if (opt.verify && e.bn) {
          const int64_t C = L.out;
          std::vector<float> ys(2 * C);
          for (int64_t c = 0; c < C; ++c) {
            ys[c] = y_of(-vmax / 3, pix, !bias.empty(), bias.empty() ? 0.f : bias[c]);
            ys[C + c] = y_of(vmax / 5, pix, !bias.empty(), bias.empty() ? 0.f : bias[c]);
          }
          const std::vector<float> z = bn_forward(*e.bn, ys, 2);
          for (int64_t q = 0; q < 2 * C; ++q) {
            const int64_t c = q % C;
            const float mine = (ys[q] - L.center[c]) * L.scale[c] + L.shift[c];
            QNN_CHECK(std::memcmp(&mine, &z[q], 4) == 0 || (std::isnan(mine) && std::isnan(z[q])),
                      "export: internal check failed: " + where(leaf) + " channel " + std::to_string(c) +
                          ": the folded affine map disagrees with " + e.bn->type_name() + "'s own forward");
          }
        }
        cur = Act::real;
      }
      pm.layers.push_back(std::move(L));
      i = skip(e.next);
      continue;
    }
    if (lin || ql) {
      // ---- full-precision product ----
      QNN_CHECK(cur != Act::packed, "export: " + where(leaf) +
                                        " is full precision but its input is binarized activations; not supported");
      QNN_CHECK(!pending_sign, "export: " + where(leaf) +
                                   " is full precision but its input went through a sign (QuantAct); not supported");
      k::PackedLayer L;
      L.type = k::LayerType::dense_f32;
      L.input = k::LayerInput::real;
      const Tensor& w = lin ? lin->weight : ql->weight;
      L.in = lin ? lin->in_features() : ql->in_features();
      L.out = lin ? lin->out_features() : ql->out_features();
      QNN_CHECK(w.numel() == L.in * L.out, "export: " + where(leaf) + " weight has the wrong size");
      L.w_f32.assign(w.data(), w.data() + L.in * L.out);
      L.bias = copy_bias(lin ? lin->bias : ql->bias, L.out);
      const Pending e = epilogue(i, L.out);
      float_epilogue(L, e);
      // A sign after a full-precision layer is applied by the next (binary) layer.
      if (e.sign_is_act) pending_sign = true;
      cur = Act::real;
      pm.layers.push_back(std::move(L));
      i = skip(e.next);
      continue;
    }
    if (auto* qa = dynamic_cast<QuantAct*>(m)) {
      if (!sign_like(qa->quantizer().get())) refuse_kbit(leaf, "activations", *qa->quantizer());
      if (cur != Act::packed) pending_sign = true;  // sign of +-1 is itself
      i = skip(i + 1);
      continue;
    }
    if (is_batchnorm(m)) fail("export: " + where(leaf) + " does not follow a linear layer; cannot be folded");
    fail("export: " + where(leaf) + " is not supported; export supports fp and bnn models made of Linear / "
         "QuantLinear (1-bit), BatchNorm1d, ReLU, QuantAct(Sign), Dropout and Flatten");
  }
  QNN_CHECK(!pm.layers.empty(), "export: the model has no linear layers");
  QNN_CHECK(!pending_sign && cur != Act::packed,
            "export: the model ends in a sign; the last layer must produce logits (e.g. QuantLinear -> BatchNorm1d)");
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
