#include "layers/quant/constraints.h"

#include <cstdio>

namespace qnn {

void Constraint::attach(Tensor& t) const {
  QNN_CHECK(t.defined(), "Constraint::attach: undefined tensor");
  ParamAttrs& pa = t.param_attrs();
  pa.constraint = apply;
  pa.constraint_name = name;
}

void Clip::operator()(float* w, int64_t n) const {
  const float l = lo, h = hi;
#pragma omp parallel for simd if (parallel: n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) w[i] = w[i] < l ? l : (w[i] > h ? h : w[i]);
}

std::string Clip::name() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "clip[%g, %g]", (double)lo, (double)hi);
  return buf;
}

Clip::operator Constraint() const {
  QNN_CHECK(lo <= hi, "Clip: lo > hi (" + name() + ")");
  // The Clip itself, not a lambda around it: as_clip() recognises it by type.
  return Constraint{name(), *this};
}

}  // namespace qnn
