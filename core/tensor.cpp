// core/tensor.cpp — Tensor creation, access, views and printing.
#include "core/tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "core/autograd.h"
#include "core/rng.h"

namespace qnn {

[[noreturn]] void fail(const std::string& msg) { throw Error(msg); }

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  // A zero dimension makes the shape empty whatever the others are (a file
  // may say [2^34, 2^34, 0]: the product of the first two must not overflow
  // on the way; fuzz_checkpoint found that).
  for (int64_t d : s) {
    QNN_CHECK(d >= 0, "negative dimension in shape " + shape_str(s));
    if (d == 0) return 0;
  }
  int64_t n = 1;
  for (int64_t d : s)
    QNN_CHECK(!__builtin_mul_overflow(n, d, &n), "shape " + shape_str(s) + " has more elements than int64 can count");
  return n;
}

// ---- creation ---------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->storage = std::make_shared<Storage>(shape_numel(shape));
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape) { return full(shape, 0.f); }
Tensor Tensor::ones(const Shape& shape) { return full(shape, 1.f); }

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  t.fill(value);
  return t;
}

Tensor Tensor::scalar(float value) { return full({}, value); }

Tensor Tensor::from_data(const Shape& shape, const float* values) {
  Tensor t = empty(shape);
  if (t.numel()) std::memcpy(t.data(), values, sizeof(float) * t.numel());
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  QNN_CHECK((int64_t)values.size() == shape_numel(shape),
            "from_vector: " + std::to_string(values.size()) + " values for shape " + shape_str(shape));
  return from_data(shape, values.data());
}

Tensor Tensor::uniform(const Shape& shape, float lo, float hi, Rng& rng) {
  Tensor t = empty(shape);
  float* p = t.data();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = rng.uniform(lo, hi);
  return t;
}

Tensor Tensor::normal(const Shape& shape, float mean, float stddev, Rng& rng) {
  Tensor t = empty(shape);
  float* p = t.data();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = mean + stddev * rng.normal();
  return t;
}

// ---- inspection ----------------------------------------------------------------

static const TensorImpl& checked(const std::shared_ptr<TensorImpl>& p) {
  if (!p) fail("use of an undefined Tensor");
  return *p;
}

const Shape& Tensor::shape() const { return checked(impl_).shape; }

int64_t Tensor::dim(int64_t i) const {
  const int64_t n = ndim();
  const int64_t j = i < 0 ? i + n : i;
  QNN_CHECK(j >= 0 && j < n, "dim(" + std::to_string(i) + ") out of range for shape " + shape_str(shape()));
  return shape()[j];
}

int64_t Tensor::numel() const { return shape_numel(shape()); }
float* Tensor::data() { return checked(impl_).storage->data; }
const float* Tensor::data() const { return checked(impl_).storage->data; }

float Tensor::item() const {
  QNN_CHECK(numel() == 1, "item() needs a 1-element tensor, got shape " + shape_str(shape()));
  return data()[0];
}

float Tensor::at(std::initializer_list<int64_t> idx) const {
  QNN_CHECK((int64_t)idx.size() == ndim(), "at(): " + std::to_string(idx.size()) + " indices for shape " + shape_str(shape()));
  int64_t off = 0, k = 0;
  for (int64_t i : idx) {
    QNN_CHECK(i >= 0 && i < shape()[k], "at(): index out of range for shape " + shape_str(shape()));
    off = off * shape()[k++] + i;
  }
  return data()[off];
}

std::vector<float> Tensor::to_vector() const { return std::vector<float>(data(), data() + numel()); }

Tensor Tensor::clone() const { return from_data(shape(), data()); }

void Tensor::copy_from(const Tensor& src) {
  QNN_CHECK(numel() == src.numel(), "copy_from: " + shape_str(src.shape()) + " into " + shape_str(shape()));
  if (numel()) std::memmove(data(), src.data(), sizeof(float) * numel());
}

void Tensor::fill(float v) {
  float* p = data();
  const int64_t n = numel();
  for (int64_t i = 0; i < n; ++i) p[i] = v;
}

// ---- autograd accessors ----------------------------------------------------------

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  QNN_CHECK(is_leaf(), "set_requires_grad: only leaf tensors (not results of ops) can change requires_grad");
  impl_->requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return checked(impl_).grad_fn == nullptr; }

Tensor Tensor::grad() const { return Tensor(checked(impl_).grad); }
bool Tensor::has_grad() const { return impl_ && impl_->grad != nullptr; }

float* Tensor::grad_data() const {
  TensorImpl& t = *impl_;
  if (!t.grad) {
    Tensor g = Tensor::zeros(t.shape);
    t.grad = g.impl_ptr();
  }
  return t.grad->storage->data;
}

void Tensor::zero_grad() {
  if (impl_) impl_->grad.reset();
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape();
  impl->storage = impl_->storage;
  return Tensor(std::move(impl));
}

void Tensor::rebind_storage(float* external, bool copy_values) {
  QNN_CHECK(impl_ != nullptr, "rebind_storage: undefined tensor");
  TensorImpl& t = *impl_;
  const int64_t n = shape_numel(t.shape);
  QNN_CHECK(!external || (reinterpret_cast<uintptr_t>(external) % 64) == 0,
            "rebind_storage: external memory must be 64-byte aligned (the kernels assume it)");
  auto s = external ? std::make_shared<Storage>(external, n) : std::make_shared<Storage>(n);
  if (copy_values && n > 0 && s->data != t.storage->data) std::memcpy(s->data, t.storage->data, sizeof(float) * n);
  t.storage = std::move(s);
}

const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked(impl_).grad_fn; }

ParamAttrs& Tensor::param_attrs() {
  TensorImpl& t = *impl_;
  if (!t.param) t.param = std::make_shared<ParamAttrs>();
  return *t.param;
}

const ParamAttrs* Tensor::param_attrs_if() const { return impl_ ? impl_->param.get() : nullptr; }

// ---- views ------------------------------------------------------------------------

Tensor Tensor::reshape(const Shape& new_shape) const {
  Shape s = new_shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      QNN_CHECK(infer < 0, "reshape: more than one -1 in " + shape_str(new_shape));
      infer = (int64_t)i;
    } else {
      QNN_CHECK(s[i] >= 0, "reshape: bad dimension in " + shape_str(new_shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    QNN_CHECK(known > 0 && numel() % known == 0,
              "reshape: cannot infer -1 for " + shape_str(shape()) + " -> " + shape_str(new_shape));
    s[infer] = numel() / known;
  }
  QNN_CHECK(shape_numel(s) == numel(), "reshape: " + shape_str(shape()) + " has " + std::to_string(numel()) +
                                           " elements, " + shape_str(new_shape) + " needs " +
                                           std::to_string(shape_numel(s)));
  Tensor out = detach();  // shares storage
  out.impl_->shape = s;
  if (needs_grad(*this)) {
    // [any] -> [same numel]: the flat order is unchanged, so the gradient is
    // the output gradient read with the input's shape.
    record(out, "reshape", {*this}, [x = *this](const Tensor& g) {
      float* gx = x.grad_data();
      const float* gy = g.data();
      for (int64_t i = 0, n = g.numel(); i < n; ++i) gx[i] += gy[i];
    });
  }
  return out;
}

Tensor Tensor::flatten(int64_t start_dim) const {
  const int64_t n = ndim();
  if (start_dim < 0) start_dim += n;
  QNN_CHECK(start_dim >= 0 && start_dim <= n, "flatten: start_dim out of range for " + shape_str(shape()));
  Shape s(shape().begin(), shape().begin() + start_dim);
  int64_t rest = 1;
  for (int64_t i = start_dim; i < n; ++i) rest *= shape()[i];
  s.push_back(rest);
  return reshape(s);
}

// ---- printing -----------------------------------------------------------------------

static void print_rec(std::ostringstream& os, const float* p, const Shape& s, size_t d, int prec,
                      int64_t maxn, int indent) {
  if (s.empty()) {
    os << p[0];
    return;
  }
  int64_t stride = 1;
  for (size_t i = d + 1; i < s.size(); ++i) stride *= s[i];
  os << "[";
  const int64_t n = s[d];
  for (int64_t i = 0; i < n; ++i) {
    if (n > maxn && i == maxn / 2) {
      os << "...";
      i = n - maxn / 2 - 1;
      if (d + 1 < s.size()) os << ",\n" << std::string(indent + 1, ' ');
      else os << ", ";
      continue;
    }
    if (d + 1 == s.size()) {
      os << std::setw(prec + 4) << p[i];
    } else {
      print_rec(os, p + i * stride, s, d + 1, prec, maxn, indent + 1);
    }
    if (i + 1 < n) {
      if (d + 1 < s.size()) os << ",\n" << std::string(indent + 1, ' ');
      else os << ", ";
    }
  }
  os << "]";
}

std::string Tensor::str(int precision, int64_t max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << std::fixed << std::setprecision(precision);
  os << "Tensor(shape=" << shape_str(shape());
  if (requires_grad()) os << ", requires_grad";
  if (impl_->grad_fn) os << ", grad_fn=" << impl_->grad_fn->name;
  os << ")\n";
  if (numel() == 0) os << "[]";
  else print_rec(os, data(), shape(), 0, precision, max_per_dim, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace qnn
