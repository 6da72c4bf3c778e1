// core/autograd.h — the reverse-mode engine, in one small header.
//
// A Node is what an op leaves behind when any input requires a gradient:
//   { name, inputs (parents), backward }
// `backward(grad_out)` receives dL/d(output) and ADDS dL/d(input) into each
// parent's grad buffer (input.grad_data()), skipping parents that do not
// require grad. Saved tensors are captured by the backward closure.
//
// Rule for op writers: never capture the op's *output* Tensor in its own
// closure (that is a reference cycle: output -> node -> closure -> output).
// Capture `out.detach()` instead: same numbers, no history.
//
// Tensor::backward() topologically sorts the graph with an explicit stack (no
// recursion: an LSTM over 300 steps is thousands of nodes deep), sweeps it in
// reverse, and frees every node as soon as it has run, so saved tensors and
// intermediate gradients are released during the sweep.
#pragma once

#include <functional>
#include <vector>

#include "core/tensor.h"

namespace qnn {

using BackwardFn = std::function<void(const Tensor& grad_out)>;

struct Node {
  const char* name = "?";
  std::vector<Tensor> inputs;
  BackwardFn backward;
  ~Node();  // iterative teardown: destroying a deep graph never recurses deeply
};

// Is gradient recording on for this thread? (Off inside a NoGradGuard.)
bool grad_enabled();

// RAII: disables recording while alive (evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and at least one input requires a gradient:
// exactly when an op must record a node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
inline bool needs_grad(const Tensor& a) { return needs_grad({&a}); }
inline bool needs_grad(const Tensor& a, const Tensor& b) { return needs_grad({&a, &b}); }
inline bool needs_grad(const Tensor& a, const Tensor& b, const Tensor& c) { return needs_grad({&a, &b, &c}); }

// Attach a node to `out`: out.requires_grad becomes true, out.grad_fn = node.
// Call only when needs_grad(...) is true.
void record(Tensor& out, const char* name, std::vector<Tensor> inputs, BackwardFn backward);

// For backward passes that *write* a whole gradient with a BLAS call: returns
// t's grad buffer and sets beta = 1 (accumulate) if it already held values, or
// allocates it uninitialised and sets beta = 0 (overwrite), which saves a
// memset + a read of the buffer per GEMM.
float* grad_for_gemm(const Tensor& t, float& beta);

// Number of nodes reachable from t (for tests and teaching).
int64_t graph_size(const Tensor& t);

}  // namespace qnn
