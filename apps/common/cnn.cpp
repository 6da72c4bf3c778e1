#include "apps/common/cnn.h"

#include <cmath>
#include <vector>

#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv.h"
#include "layers/linear.h"
#include "layers/pool.h"
#include "layers/residual.h"
#include "layers/quant/quant.h"

namespace qnn::app {

namespace {

// One conv block of an arch: output channels at width 1, and whether a 2x2
// max-pool follows it.
struct ConvSpec {
  int64_t channels;
  bool pool;
};

// BinaryNet: 3x3 pad 1; pool after every 2nd conv. CNV: 3x3 unpadded; pool
// after the 2nd and 4th conv (FINN's CNV_OUT_CH_POOL).
const std::vector<ConvSpec>& conv_specs(const std::string& arch) {
  static const std::vector<ConvSpec> binarynet{{128, false}, {128, true}, {256, false},
                                               {256, true},  {512, false}, {512, true}};
  static const std::vector<ConvSpec> cnv{{64, false}, {64, true}, {128, false}, {128, true}, {256, false}, {256, false}};
  return arch == "cnv" ? cnv : binarynet;
}

int64_t conv_pad(const std::string& arch) { return arch == "cnv" ? 0 : 1; }

// Spatial size after the conv stack (-1 and a message if it does not fit).
int64_t final_size(const CnnConfig& c, std::string* why) {
  int64_t h = c.image;
  const int64_t pad = conv_pad(c.arch);
  int i = 0;
  for (const ConvSpec& s : conv_specs(c.arch)) {
    ++i;
    h = h + 2 * pad - 2;
    if (h >= 1 && s.pool) h /= 2;
    if (h < 1) {
      if (why) *why = "--image " + std::to_string(c.image) + " is too small for " + c.arch + " (nothing is left after conv " +
                      std::to_string(i) + ")";
      return -1;
    }
  }
  return h;
}

// Builds the layers in order, carrying the activation quantizer that the
// next product layer takes as its input quantizer (larq style).
struct Builder {
  const CnnConfig& c;
  Rng& rng;
  Sequential* net;  // where layers go: the model, or a Residual's body
  bool fp;
  BatchNormOptions bn;
  Surrogate act_s, weight_s;
  ConvPadding padding;
  std::shared_ptr<Quantizer> pending;  // input quantizer of the next product layer (null: real input)

  std::shared_ptr<Quantizer> weight_quantizer() { return quantizer_for_bits(c.wbits, weight_s, false, &rng); }

  void conv(int64_t cin, int64_t cout, int64_t pad) {
    if (fp) {
      // No bias: batch norm follows (its beta is the bias).
      net->add(std::make_shared<Conv2d>(cin, cout, 3, rng, Conv2dOptions{1, pad, false, "he"}));
      return;
    }
    QuantConv2dOptions o;
    o.stride = 1;
    o.pad = pad;
    o.padding = padding;
    o.input_quantizer = std::move(pending);
    o.weight_quantizer = weight_quantizer();
    if (o.weight_quantizer) o.weight_constraint = Clip{-1.0f, 1.0f};
    o.glorot_lr_scale = o.weight_quantizer && c.lr_scale > 0;
    o.init = "glorot";
    net->add(std::make_shared<QuantConv2d>(cin, cout, 3, rng, o));
    pending = nullptr;
  }

  void linear(int64_t fin, int64_t fout, bool last) {
    if (fp) {
      net->add(std::make_shared<Linear>(fin, fout, rng, LinearOptions{false, last ? "glorot" : "he"}));
      return;
    }
    QuantLinearOptions o;
    o.input_quantizer = std::move(pending);
    o.weight_quantizer = weight_quantizer();
    if (o.weight_quantizer) o.weight_constraint = Clip{-1.0f, 1.0f};
    o.glorot_lr_scale = o.weight_quantizer && c.lr_scale > 0;
    o.init = "glorot";
    net->add(std::make_shared<QuantLinear>(fin, fout, rng, o));
    pending = nullptr;
  }

  void batch_norm(int64_t ch, bool spatial) {
    if (c.shift_bn) {
      net->add(std::make_shared<ShiftBatchNorm>(ch, bn, true, spatial ? 2 : 0));
    } else if (spatial) {
      net->add(std::make_shared<BatchNorm2d>(ch, bn));
    } else {
      net->add(std::make_shared<BatchNorm1d>(ch, bn));
    }
  }

  // After a hidden layer's batch norm: ReLU for fp (+ Dropout after the
  // hidden FC layers only: between a conv and its batch norm, dropout would
  // make the BN's training statistics disagree with its running ones, and
  // the FC layers hold most of the weights that over-fit); for bnn/qnn the
  // quantizer goes to the next product layer (HardTanh when abits = 32).
  void activation(bool fc = false) {
    if (fp) {
      net->add(ReLU());
      if (fc && c.dropout > 0) net->add(std::make_shared<Dropout>(c.dropout, rng));
    } else if (c.abits == 32) {
      net->add(HardTanh());
    } else {
      pending = quantizer_for_bits(c.abits, act_s, false, &rng);
    }
  }
};

}  // namespace

int64_t scaled_channels(int64_t base, float width) {
  return std::max<int64_t>(1, (int64_t)std::lround((double)base * width));
}

void resolve_cnn_defaults(CnnConfig& c) {
  const bool fp = c.model == "fp";
  QNN_CHECK(fp || c.model == "bnn" || c.model == "qnn", "--model must be fp, bnn or qnn, got '" + c.model + "'");
  QNN_CHECK(c.arch == "binarynet" || c.arch == "cnv", "--arch must be binarynet or cnv, got '" + c.arch + "'");
  if (c.model == "bnn") {
    QNN_CHECK((c.wbits < 0 || c.wbits == 1) && (c.abits < 0 || c.abits == 1),
              "--model bnn means 1-bit weights and activations; use --model qnn for --wbits/--abits");
    c.wbits = c.abits = 1;
  }
  if (c.model == "qnn") {
    if (c.wbits < 0) c.wbits = 2;
    if (c.abits < 0) c.abits = 2;
  }
  if (fp) {
    QNN_CHECK(c.wbits < 0 && c.abits < 0, "--wbits/--abits need --model qnn (or bnn)");
    c.wbits = c.abits = 32;
  }
  if (c.fc < 0) c.fc = c.arch == "cnv" ? 512 : 1024;
  if (c.dropout < 0) c.dropout = 0.0f;
  if (c.lr_scale < 0) c.lr_scale = fp ? 0 : 1;
  if (c.bn_eps < 0) c.bn_eps = fp ? 1e-5f : 1e-4f;
  if (c.kernels < 0) c.kernels = quant_kernels_default() ? 1 : 0;  // QNN_QUANT_KERNELS
  validate_cnn(c);
}

void validate_cnn(const CnnConfig& c) {
  const bool fp = c.model == "fp";
  QNN_CHECK(fp || c.model == "bnn" || c.model == "qnn", "--model must be fp, bnn or qnn, got '" + c.model + "'");
  QNN_CHECK(c.arch == "binarynet" || c.arch == "cnv", "--arch must be binarynet or cnv, got '" + c.arch + "'");
  QNN_CHECK(std::isfinite(c.width) && c.width > 0, "--width must be > 0, got " + std::to_string(c.width));
  QNN_CHECK(c.fc > 0, "--fc must be positive (resolve the default first), got " + std::to_string(c.fc));
  auto bits_ok = [](int b) { return b == 32 || (b >= 1 && b <= 16); };
  QNN_CHECK(bits_ok(c.wbits), "--wbits must be 1..16 or 32, got " + std::to_string(c.wbits));
  QNN_CHECK(bits_ok(c.abits), "--abits must be 1..16 or 32, got " + std::to_string(c.abits));
  QNN_CHECK(!fp || (c.wbits == 32 && c.abits == 32), "--model fp has 32-bit weights and activations");
  parse_surrogate(c.surrogate);  // throws with a clear message on bad input
  parse_surrogate(c.weight_surrogate);
  QNN_CHECK(c.pad_mode == "zero" || c.pad_mode == "one", "--pad-mode must be zero or one, got '" + c.pad_mode + "'");
  QNN_CHECK(!(fp && c.shift_bn), "--shift-bn is for quantized models (--model bnn|qnn)");
  QNN_CHECK(!c.shortcuts || c.arch == "binarynet",
            "--shortcuts is for --arch binarynet (cnv's unpadded convs change every map's size)");
  QNN_CHECK(c.dropout >= 0 && c.dropout < 1, "--dropout must be in [0, 1), got " + std::to_string(c.dropout));
  QNN_CHECK(fp || c.dropout == 0,
            "--dropout is for --model fp: in bnn/qnn the activation quantizer sits in the next layer's input, "
            "where dropout would have to go between it and the product");
  QNN_CHECK(c.bn_eps > 0 && c.bn_momentum >= 0 && c.bn_momentum <= 1,
            "--bn-eps must be > 0 and --bn-momentum in [0, 1]");
  QNN_CHECK(c.in_channels > 0 && c.classes > 0, "in_channels and classes must be positive");
  std::string why;
  QNN_CHECK(c.image > 0 && final_size(c, &why) > 0, why.empty() ? "--image must be positive" : why);
}

std::shared_ptr<Module> build_cnn(const CnnConfig& c, Rng& rng) {
  validate_cnn(c);
  auto net = std::make_shared<Sequential>();
  const bool fp = c.model == "fp";
  Builder b{c, rng, net.get(), fp, BatchNormOptions{c.bn_momentum, c.bn_eps, true}, parse_surrogate(c.surrogate),
            parse_surrogate(c.weight_surrogate), parse_conv_padding(c.pad_mode), nullptr};
  const bool binarynet = c.arch == "binarynet";
  const int64_t pad = conv_pad(c.arch);

  int64_t cin = c.in_channels, h = c.image;
  // Layers added between begin and end go into a Residual's body when
  // `on` (the shortcut pools like the body: `pool`), else into the model.
  std::shared_ptr<Sequential> body;
  auto begin_shortcut = [&](bool on) {
    if (!on) return;
    body = std::make_shared<Sequential>();
    b.net = body.get();
  };
  auto end_shortcut = [&](int64_t pool) {
    if (!body) return;
    net->add(std::make_shared<Residual>(body, pool));
    body = nullptr;
    b.net = net.get();
  };
  for (const ConvSpec& s : conv_specs(c.arch)) {
    const int64_t cout = scaled_channels(s.channels, c.width);
    begin_shortcut(c.shortcuts && cin == cout);
    b.conv(cin, cout, pad);
    h = h + 2 * pad - 2;
    if (binarynet) {
      // conv -> max-pool -> BN -> activation (Courbariaux's order)
      if (s.pool) b.net->add(std::make_shared<MaxPool2d>(2));
      b.batch_norm(cout, true);
      end_shortcut(s.pool ? 2 : 0);
      b.activation();
    } else {
      // conv -> BN -> activation -> max-pool (FINN's order; for bnn/qnn the
      // quantizer runs in the next conv, after the pool: the same values)
      b.batch_norm(cout, true);
      b.activation();
      if (s.pool) net->add(std::make_shared<MaxPool2d>(2));
    }
    if (s.pool) h /= 2;
    cin = cout;
  }
  net->add(std::make_shared<Flatten>());
  int64_t fin = cin * h * h;
  for (int i = 0; i < 2; ++i) {
    begin_shortcut(c.shortcuts && fin == c.fc);
    b.linear(fin, c.fc, false);
    b.batch_norm(c.fc, false);
    end_shortcut(0);
    b.activation(true);
    fin = c.fc;
  }
  b.linear(fin, c.classes, true);
  b.batch_norm(c.classes, false);
  if (!fp && c.kernels >= 0) set_quant_kernels(*net, c.kernels == 1);  // per layer, not process-wide
  return net;
}

}  // namespace qnn::app
