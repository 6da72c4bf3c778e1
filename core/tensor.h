// core/tensor.h — the Tensor: a cheap, shared handle to a dense float32 array.
//
// (The tutorial for all of core/ is at the top of core/qnn.h; start there.)
//
// A Tensor is a shared_ptr to a TensorImpl holding
//   shape          e.g. {batch, features}; a scalar has shape {}
//   storage        contiguous float32, 64-byte aligned, possibly shared by
//                  reshape views (reshape never copies)
//   requires_grad  whether autograd tracks operations on it
//   grad           a Tensor of the same shape, allocated lazily by backward
//   grad_fn        the autograd Node that produced it (null for leaves)
//   param          optional parameter attributes (lr scale, weight constraint)
// Copying a Tensor copies the handle, never the numbers; use clone() for that.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace qnn {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3]"
int64_t shape_numel(const Shape& s);

class Rng;
struct Node;

// Contiguous, 64-byte aligned float buffer. Buffers come from a small caching
// allocator (core/storage.cpp): a training step asks for the same sizes every
// iteration, and reusing them avoids page-faulting fresh memory each time.
// A Storage may also wrap memory it does not own (Tensor::rebind_storage:
// e.g. a shared-memory window that several processes update in place).
struct Storage {
  float* data = nullptr;
  int64_t size = 0;  // number of floats
  bool owned = true;
  explicit Storage(int64_t n);
  Storage(float* external, int64_t n) : data(external), size(n), owned(false) {}  // not freed
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

// Attributes a parameter can carry; optimizers read them (Keras/larq style:
// the constraint travels with the variable, the optimizer applies it after
// every step, so a training loop cannot forget it).
struct ParamAttrs {
  float lr_scale = 1.0f;                                  // per-layer LR multiplier
  // Called as given after every update. (An optimizer may fuse it into its
  // own loop only when the callable IS layers/quant/constraints.h's Clip,
  // recognised by its type: replacing or wrapping it is always honoured.)
  std::function<void(float* w, int64_t n)> constraint;    // e.g. clip to [-1, 1]
  std::string constraint_name;                            // for summaries / warnings
};

struct TensorImpl {
  Shape shape;
  std::shared_ptr<Storage> storage;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;     // same shape as this; lazily allocated
  std::shared_ptr<Node> grad_fn;        // null for leaf tensors
  std::shared_ptr<ParamAttrs> param;    // null unless this is a parameter
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor (defined() == false)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation --------------------------------------------------------
  static Tensor empty(const Shape& shape);  // uninitialised values
  static Tensor zeros(const Shape& shape);
  static Tensor ones(const Shape& shape);
  static Tensor full(const Shape& shape, float value);
  static Tensor scalar(float value);  // shape {}
  static Tensor from_data(const Shape& shape, const float* values);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  static Tensor uniform(const Shape& shape, float lo, float hi, Rng& rng);
  static Tensor normal(const Shape& shape, float mean, float stddev, Rng& rng);

  // ---- inspection --------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t ndim() const { return (int64_t)shape().size(); }
  int64_t dim(int64_t i) const;  // negative i counts from the end
  int64_t numel() const;
  float* data();
  const float* data() const;
  float item() const;              // the single value of a 1-element tensor
  float at(std::initializer_list<int64_t> idx) const;
  std::vector<float> to_vector() const;
  Tensor clone() const;            // deep copy, no grad history
  void copy_from(const Tensor& src);  // values only; shapes must match in numel
  void fill(float v);

  // ---- autograd ------------------------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on = true);  // only on leaves
  bool is_leaf() const;
  Tensor grad() const;             // undefined until a backward reached it
  float* grad_data() const;        // zero-initialised grad buffer, created on demand
                                   // (const: a handle; the buffer lives in the impl)
  bool has_grad() const;
  void zero_grad();                // drop the gradient (next backward starts at 0)
  void backward();                 // this must be a 1-element tensor (a loss)
  void backward(const Tensor& grad_output);
  Tensor detach() const;           // same storage, no history, requires_grad=false
  // Makes `external` (numel() floats, caller-owned, 64-byte aligned, alive
  // for as long as the tensor uses it) this tensor's storage, copying the
  // values there when copy_values; rebind_storage(nullptr, true) moves them
  // back into a fresh owned buffer. Every handle of this tensor follows;
  // views taken before (reshape, detach) keep the old storage.
  void rebind_storage(float* external, bool copy_values);
  const std::shared_ptr<Node>& grad_fn() const;

  // ---- parameters ----------------------------------------------------------
  ParamAttrs& param_attrs();       // creates the attributes on first use
  const ParamAttrs* param_attrs_if() const;

  // ---- views -----------------------------------------------------------------
  Tensor reshape(const Shape& shape) const;  // differentiable; one dim may be -1
  Tensor flatten(int64_t start_dim = 1) const;

  // ---- printing (teaching) ----------------------------------------------------
  std::string str(int precision = 4, int64_t max_per_dim = 8) const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Throws qnn::Error with "op: message" if cond is false. All user-facing
// failures (bad shapes, bad files, bad flags) are reported this way.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void fail(const std::string& msg);
#define QNN_CHECK(cond, msg)                                   \
  do {                                                         \
    if (!(cond)) ::qnn::fail(std::string(msg));                \
  } while (0)

}  // namespace qnn
