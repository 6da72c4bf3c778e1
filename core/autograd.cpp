// core/autograd.cpp — topological sort, reverse sweep, graph teardown.
#include "core/autograd.h"

#include "core/profiler.h"

#include <unordered_map>
#include <unordered_set>

namespace qnn {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

void record(Tensor& out, const char* name, std::vector<Tensor> inputs, BackwardFn backward) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  TensorImpl* impl = out.impl();
  impl->requires_grad = true;
  impl->grad_fn = std::move(node);
}

// Destroying the loss of an un-backwarded 10,000-op chain would otherwise
// recurse 10,000 shared_ptr destructors deep. Instead, a node hands the nodes
// that only it kept alive to a thread-local work list, drained by the
// outermost destructor in a loop.
Node::~Node() {
  static thread_local std::vector<std::shared_ptr<Node>> pending;
  static thread_local bool draining = false;
  backward = nullptr;  // releases saved tensors first
  for (Tensor& t : inputs) {
    const auto& p = t.impl_ptr();
    if (p && p.use_count() == 1 && p->grad_fn) pending.push_back(std::move(p->grad_fn));
  }
  inputs.clear();
  if (draining) return;
  draining = true;
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    n.reset();  // may push more onto `pending`
  }
  draining = false;
}

// Post-order DFS with an explicit stack: returns tensors so that every tensor
// comes after all tensors it was computed from (inputs first, root last).
// Returns strong references: while backward runs, every tensor in the graph
// must stay alive even after the node that held it has been freed.
static std::vector<std::shared_ptr<TensorImpl>> topo_order(const std::shared_ptr<TensorImpl>& root_ptr) {
  TensorImpl* root = root_ptr.get();
  std::vector<std::shared_ptr<TensorImpl>> order;
  std::unordered_set<TensorImpl*> visited;
  std::vector<std::pair<std::shared_ptr<TensorImpl>, size_t>> stack;  // (tensor, next input index)
  stack.emplace_back(root_ptr, 0);
  visited.insert(root);
  while (!stack.empty()) {
    auto& [t, i] = stack.back();
    Node* n = t->grad_fn.get();
    (void)root;
    if (n && i < n->inputs.size()) {
      const std::shared_ptr<TensorImpl>& child = n->inputs[i++].impl_ptr();
      if (child && child->requires_grad && !visited.count(child.get())) {
        visited.insert(child.get());
        stack.emplace_back(child, 0);
      }
    } else {
      order.push_back(std::move(t));
      stack.pop_back();
    }
  }
  return order;
}

static void run_backward(const Tensor& root, const Tensor& grad_output) {
  QNN_CHECK(root.requires_grad(), "backward: tensor does not require grad (no parameter reached it, or it was computed under NoGradGuard)");
  QNN_CHECK(grad_output.numel() == root.numel(), "backward: gradient shape " + shape_str(grad_output.shape()) +
                                                    " does not match " + shape_str(root.shape()));
  // Seed dL/droot.
  {
    float* g = root.grad_data();
    const float* s = grad_output.data();
    for (int64_t i = 0, n = root.numel(); i < n; ++i) g[i] += s[i];
  }
  std::vector<std::shared_ptr<TensorImpl>> order = topo_order(root.impl_ptr());
  NoGradGuard no_grad;  // backward closures compute with plain ops, never recorded
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    TensorImpl* t = it->get();
    if (!t->grad_fn) continue;  // leaf: keeps its accumulated .grad
    std::shared_ptr<Node> node = std::move(t->grad_fn);  // frees the graph as we go
    if (t->grad && node->backward) {
      profiler::Scope timed("bwd ", node->name);
      node->backward(Tensor(t->grad));
    }
    // Intermediate gradients are not kept (PyTorch's default, no retain_grad):
    // that releases activation-sized buffers during the sweep.
    t->grad.reset();
  }
}

void Tensor::backward() {
  QNN_CHECK(defined() && numel() == 1,
            "backward() without an argument needs a 1-element tensor (a loss), got " +
                (defined() ? shape_str(shape()) : std::string("undefined")));
  run_backward(*this, Tensor::ones(shape()));
}

void Tensor::backward(const Tensor& grad_output) { run_backward(*this, grad_output); }

float* grad_for_gemm(const Tensor& t, float& beta) {
  TensorImpl* impl = t.impl();
  if (impl->grad) {
    beta = 1.f;
  } else {
    impl->grad = Tensor::empty(impl->shape).impl_ptr();
    beta = 0.f;
  }
  return impl->grad->storage->data;
}

int64_t graph_size(const Tensor& t) {
  if (!t.defined() || !t.grad_fn()) return 0;
  int64_t n = 0;
  for (const auto& x : topo_order(t.impl_ptr()))
    if (x->grad_fn) ++n;
  return n;
}

}  // namespace qnn
