// docs/examples/custom_layer/main.cpp — a layer written outside the qnn tree,
// built against the installed library with nothing but pkg-config:
//
//     make && ./custom_layer      # g++ -std=c++20 main.cpp $(pkg-config --cflags --libs qnn)
//
// ChannelScale learns one factor per channel, y[n, c, ...] = x[n, c, ...] * s[c]
// (a batch norm's gamma without the normalisation). Its op has its own forward
// and backward, written the way core/ops_*.cpp write theirs; the program
// checks that backward against central differences, then trains a small
// binarized model that uses the layer on synthetic data and prints the loss
// going down. Exit status 0 only if both the check and the training succeed.
#include <qnn/qnn.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

using namespace qnn;

// ---- the op ------------------------------------------------------------------
// y = x * s[c] over dim 1.   x: [N, C, ...] (any trailing dims), s: [C], y: x's shape.
// backward: dL/dx[n, c, i] += dL/dy[n, c, i] * s[c]
//           dL/ds[c]       += sum over n, i of dL/dy[n, c, i] * x[n, c, i]
Tensor channel_scale(const Tensor& x, const Tensor& s) {
  QNN_CHECK(x.ndim() >= 2 && s.ndim() == 1 && x.dim(1) == s.dim(0),
            "channel_scale: x " + shape_str(x.shape()) + " needs dim 1 == the length of s " + shape_str(s.shape()));
  const int64_t N = x.dim(0), C = x.dim(1), inner = x.numel() / (N * C);  // inner: trailing dims
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  const float* ps = s.data();
  float* py = y.data();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < inner; ++i) py[(n * C + c) * inner + i] = px[(n * C + c) * inner + i] * ps[c];
  if (needs_grad(x, s))
    record(y, "channel_scale", {x, s}, [x, s, N, C, inner](const Tensor& gy) {  // captures inputs, never y
      const float* g = gy.data();
      const float* px = x.data();
      const float* ps = s.data();
      float* gx = x.requires_grad() ? x.grad_data() : nullptr;
      float* gs = s.requires_grad() ? s.grad_data() : nullptr;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t i = 0; i < inner; ++i) {
            const int64_t k = (n * C + c) * inner + i;
            if (gx) gx[k] += g[k] * ps[c];  // ADD, never overwrite
            if (gs) gs[c] += g[k] * px[k];
          }
    });
  return y;
}

// ---- the layer ---------------------------------------------------------------
class ChannelScale : public Module {
 public:
  explicit ChannelScale(int64_t channels) { s = register_parameter("s", Tensor::ones({channels})); }
  Tensor forward(const Tensor& x) override { return channel_scale(x, s); }  // keeps x's shape
  std::string type_name() const override { return "ChannelScale"; }
  Tensor s;  // [channels]
};

// ---- a central-difference check of the backward --------------------------------
// L = sum(y * R) for a fixed random R; compare dL/dx and dL/ds from backward
// with (L(v + h) - L(v - h)) / 2h for every element v. Returns the worst
// |analytic - numeric| / (1e-3 + 1e-2 |numeric|): <= 1 passes.
static double grad_check(Rng& rng) {
  Tensor x = Tensor::uniform({3, 4, 5}, -2, 2, rng).set_requires_grad();
  Tensor s = Tensor::uniform({4}, -2, 2, rng).set_requires_grad();
  Tensor R = Tensor::uniform({3, 4, 5}, -1, 1, rng);
  auto L = [&] {
    NoGradGuard ng;
    Tensor y = channel_scale(x, s);
    double acc = 0;
    for (int64_t i = 0; i < y.numel(); ++i) acc += (double)y.data()[i] * R.data()[i];
    return acc;
  };
  sum(mul(channel_scale(x, s), R)).backward();
  double worst = 0;
  for (Tensor* t : {&x, &s}) {
    const Tensor analytic = t->grad();
    for (int64_t i = 0; i < t->numel(); ++i) {
      const float v = t->data()[i];
      const float h = 1e-2f;
      t->data()[i] = v + h;
      const double up = L();
      t->data()[i] = v - h;
      const double down = L();
      t->data()[i] = v;
      const double numeric = (up - down) / (2.0 * h);
      worst = std::max(worst, std::fabs(analytic.data()[i] - numeric) / (1e-3 + 1e-2 * std::fabs(numeric)));
    }
  }
  return worst;
}

int main() {
  try {
    Rng rng(1);
    const double worst = grad_check(rng);
    std::printf("grad check channel_scale: worst error/tolerance %.3f -> %s\n", worst, worst <= 1.0 ? "ok" : "FAILED");
    if (worst > 1.0) return 1;

    // Synthetic data: 4 classes, each a Gaussian blob around a random centre
    // in 16 dimensions, with unit noise (the blobs overlap a little).
    const int64_t D = 16, K = 4, N = 512;
    std::vector<float> centres(K * D), xs(N * D);
    std::vector<int32_t> labels(N);
    for (float& c : centres) c = rng.uniform(-1, 1);
    for (int64_t n = 0; n < N; ++n) {
      labels[n] = (int32_t)rng.below(K);
      for (int64_t d = 0; d < D; ++d) xs[n * D + d] = centres[labels[n] * D + d] + rng.normal();
    }
    const Tensor X = Tensor::from_vector({N, D}, xs);

    // Real first layer, our ChannelScale, sign activations, a binary hidden
    // layer (1-bit weights and inputs), batch norm, a real classifier.
    Sequential model;
    model.add(std::make_shared<Linear>(D, 64, rng));
    auto scale = model.add(std::make_shared<ChannelScale>(64));
    model.add(std::make_shared<QuantAct>(std::make_shared<Sign>()));
    model.add(std::make_shared<BinaryLinear>(64, 64, rng));
    model.add(std::make_shared<BatchNorm1d>(64));
    model.add(ReLU());
    model.add(std::make_shared<Linear>(64, K, rng));
    std::printf("%s", summary_table(model, {-1, D}).c_str());

    Adam opt(model.parameters(), 1e-2f);
    float first = 0, last = 0;
    for (int step = 0; step <= 60; ++step) {
      opt.zero_grad();
      Tensor loss = cross_entropy(model(X), labels);
      loss.backward();
      opt.step();
      last = loss.item();
      if (step == 0) first = last;
      if (step % 10 == 0) std::printf("step %2d  loss %.4f\n", step, last);
    }
    const float* s = scale->s.data();
    std::printf("learned scales s[0..3]: %.3f %.3f %.3f %.3f\n", s[0], s[1], s[2], s[3]);
    model.eval();
    const double acc = (double)count_correct(model(X), labels) / N;
    std::printf("train accuracy %.3f\n", acc);
    const bool down = last < 0.5f * first;
    std::printf("loss %.4f -> %.4f: %s\n", first, last, down ? "went down" : "did NOT go down");
    return down ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "custom_layer: %s\n", e.what());
    return 1;
  }
}
