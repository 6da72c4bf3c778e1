// core/ops_elementwise.cpp — add, sub, mul, div (with broadcasting) and friends.
//
// Broadcasting follows numpy: shapes are aligned at the trailing end; a
// dimension of size 1 (or a missing one) is repeated. In backward, the
// gradient of a broadcast input is the output gradient *summed* over the
// repeated positions — the loop below does that by accumulating into the
// same input offset several times.
#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"

namespace qnn {
namespace {

// Output shape plus, for each input, its stride along each output dimension
// (0 where that input is broadcast).
struct Broadcast {
  Shape out;
  std::vector<int64_t> sa, sb;
};

Broadcast broadcast(const char* op, const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Broadcast r;
  r.out.assign(n, 1);
  r.sa.assign(n, 0);
  r.sb.assign(n, 0);
  int64_t stra = 1, strb = 1;
  for (size_t k = 0; k < n; ++k) {  // k counts from the last dimension
    const size_t d = n - 1 - k;
    const int64_t da = k < a.size() ? a[a.size() - 1 - k] : 1;
    const int64_t db = k < b.size() ? b[b.size() - 1 - k] : 1;
    if (da != db && da != 1 && db != 1)
      fail(std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) + " cannot broadcast");
    r.out[d] = da == 1 ? db : da;
    r.sa[d] = da == 1 ? 0 : stra;
    r.sb[d] = db == 1 ? 0 : strb;
    stra *= da;
    strb *= db;
  }
  return r;
}

// Calls f(i, ia, ib) for every flat output index i with the matching input
// offsets. The last dimension runs as a tight inner loop.
template <class F>
void for_each_broadcast(const Broadcast& bc, F&& f) {
  const size_t nd = bc.out.size();
  const int64_t total = shape_numel(bc.out);
  if (total == 0) return;
  if (nd == 0) {
    f(0, 0, 0);
    return;
  }
  const int64_t inner = bc.out[nd - 1], ia_step = bc.sa[nd - 1], ib_step = bc.sb[nd - 1];
  std::vector<int64_t> idx(nd, 0);
  int64_t ia = 0, ib = 0;
  for (int64_t i = 0; i < total; i += inner) {
    for (int64_t j = 0; j < inner; ++j) f(i + j, ia + j * ia_step, ib + j * ib_step);
    // odometer over the outer dimensions
    for (int64_t d = (int64_t)nd - 2; d >= 0; --d) {
      ia += bc.sa[d];
      ib += bc.sb[d];
      if (++idx[d] < bc.out[d]) break;
      ia -= bc.sa[d] * bc.out[d];
      ib -= bc.sb[d] * bc.out[d];
      idx[d] = 0;
    }
  }
}

enum class Bin { add, sub, mul, div };

const char* bin_name(Bin k) {
  switch (k) {
    case Bin::add: return "add";
    case Bin::sub: return "sub";
    case Bin::mul: return "mul";
    default: return "div";
  }
}

inline float apply(Bin k, float x, float y) {
  switch (k) {
    case Bin::add: return x + y;
    case Bin::sub: return x - y;
    case Bin::mul: return x * y;
    default: return x / y;
  }
}

// c = a (op) b, broadcast. Backward:
//   add: ga += g, gb += g        sub: ga += g, gb -= g
//   mul: ga += g*b, gb += g*a    div: ga += g/b, gb -= g*a/b^2
Tensor binary(Bin k, const Tensor& a, const Tensor& b) {
  const char* name = bin_name(k);
  QNN_CHECK(a.defined() && b.defined(), std::string(name) + ": undefined input");
  Tensor out;
  const bool same = a.shape() == b.shape();
  Broadcast bc;
  if (same) {
    out = Tensor::empty(a.shape());
    const float* pa = a.data();
    const float* pb = b.data();
    float* po = out.data();
    const int64_t n = out.numel();
#pragma omp parallel for simd if (parallel: n > (1 << 18))
    for (int64_t i = 0; i < n; ++i) po[i] = apply(k, pa[i], pb[i]);
  } else {
    bc = broadcast(name, a.shape(), b.shape());
    out = Tensor::empty(bc.out);
    const float* pa = a.data();
    const float* pb = b.data();
    float* po = out.data();
    for_each_broadcast(bc, [&](int64_t i, int64_t ia, int64_t ib) { po[i] = apply(k, pa[ia], pb[ib]); });
  }
  if (needs_grad(a, b)) {
    record(out, name, {a, b}, [k, a, b, same, bc](const Tensor& g) {
      const float* pg = g.data();
      const float* pa = a.data();
      const float* pb = b.data();
      float* ga = a.requires_grad() ? a.grad_data() : nullptr;
      float* gb = b.requires_grad() ? b.grad_data() : nullptr;
      auto step = [&](int64_t i, int64_t ia, int64_t ib) {
        const float gi = pg[i];
        switch (k) {
          case Bin::add:
            if (ga) ga[ia] += gi;
            if (gb) gb[ib] += gi;
            break;
          case Bin::sub:
            if (ga) ga[ia] += gi;
            if (gb) gb[ib] -= gi;
            break;
          case Bin::mul:
            if (ga) ga[ia] += gi * pb[ib];
            if (gb) gb[ib] += gi * pa[ia];
            break;
          case Bin::div:
            if (ga) ga[ia] += gi / pb[ib];
            if (gb) gb[ib] -= gi * pa[ia] / (pb[ib] * pb[ib]);
            break;
        }
      };
      if (same) {
        for (int64_t i = 0, n = g.numel(); i < n; ++i) step(i, i, i);
      } else {
        for_each_broadcast(bc, step);
      }
    });
  }
  return out;
}

// y = f(x) with dy/dx given as a function of (x, y); one node.
template <class F, class DF>
Tensor unary(const char* name, const Tensor& x, F f, DF df) {
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = y.data();
  const int64_t n = x.numel();
#pragma omp parallel for simd if (parallel: n > (1 << 18))
  for (int64_t i = 0; i < n; ++i) py[i] = f(px[i]);
  if (needs_grad(x)) {
    record(y, name, {x}, [x, ys = y.detach(), df](const Tensor& g) {
      const float* pg = g.data();
      const float* px = x.data();
      const float* py = ys.data();
      float* gx = x.grad_data();
      const int64_t n = x.numel();
#pragma omp parallel for simd if (parallel: n > (1 << 18))
      for (int64_t i = 0; i < n; ++i) gx[i] += pg[i] * df(px[i], py[i]);
    });
  }
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(Bin::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(Bin::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(Bin::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(Bin::div, a, b); }

Tensor add_scalar(const Tensor& a, float s) {
  return unary("add_scalar", a, [s](float x) { return x + s; }, [](float, float) { return 1.f; });
}
Tensor mul_scalar(const Tensor& a, float s) {
  return unary("mul_scalar", a, [s](float x) { return x * s; }, [s](float, float) { return s; });
}
Tensor neg(const Tensor& a) {
  return unary("neg", a, [](float x) { return -x; }, [](float, float) { return -1.f; });
}
Tensor square(const Tensor& a) {
  return unary("square", a, [](float x) { return x * x; }, [](float x, float) { return 2.f * x; });
}

// ---- activations live here too: they are unary elementwise maps --------------

Tensor relu(const Tensor& x) {
  return unary("relu", x, [](float v) { return v > 0.f ? v : 0.f; },
               [](float v, float) { return v > 0.f ? 1.f : 0.f; });
}
Tensor tanh(const Tensor& x) {
  return unary("tanh", x, [](float v) { return std::tanh(v); }, [](float, float y) { return 1.f - y * y; });
}
Tensor sigmoid(const Tensor& x) {
  return unary("sigmoid", x, [](float v) { return 1.f / (1.f + std::exp(-v)); },
               [](float, float y) { return y * (1.f - y); });
}
Tensor clamp(const Tensor& x, float lo, float hi) {
  QNN_CHECK(lo <= hi, "clamp: lo > hi");
  // Gradient passes where the input lies inside [lo, hi] (boundaries included,
  // like BinaryNet's 1{|x| <= 1}).
  return unary("clamp", x, [lo, hi](float v) { return v < lo ? lo : (v > hi ? hi : v); },
               [lo, hi](float v, float) { return (v >= lo && v <= hi) ? 1.f : 0.f; });
}
Tensor hardtanh(const Tensor& x, float lo, float hi) { return clamp(x, lo, hi); }
Tensor hard_sigmoid(const Tensor& x) {
  // clip((x + 1) / 2, 0, 1): slope 1/2 on [-1, 1].
  return unary("hard_sigmoid", x,
               [](float v) {
                 float y = 0.5f * (v + 1.f);
                 return y < 0.f ? 0.f : (y > 1.f ? 1.f : y);
               },
               [](float v, float) { return (v >= -1.f && v <= 1.f) ? 0.5f : 0.f; });
}

Tensor map_with_grad(const Tensor& x, const char* name, const std::function<float(float)>& f,
                     const std::function<float(float)>& df) {
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = y.data();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) py[i] = f(px[i]);
  if (needs_grad(x)) {
    record(y, name, {x}, [x, df](const Tensor& g) {
      const float* pg = g.data();
      const float* px = x.data();
      float* gx = x.grad_data();
      for (int64_t i = 0, n = x.numel(); i < n; ++i) gx[i] += pg[i] * df(px[i]);
    });
  }
  return y;
}

}  // namespace qnn
