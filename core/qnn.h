// core/qnn.h — the whole of core/ in one include, and a tutorial.
//
// ============================================================================
// A 5-minute tour of qnn's core
// ============================================================================
//
// 1. Tensors. A qnn::Tensor is a cheap handle to a dense float32 array:
//
//      Tensor x = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});   // shape [2, 3]
//      Tensor w = Tensor::uniform({4, 3}, -1, 1, rng);              // seeded Rng
//      std::cout << x;                                              // readable print
//
//    Copying a Tensor copies the handle; x.clone() copies the numbers.
//    x.reshape({3, 2}) shares the storage.
//
// 2. Ops and the graph. Ops are free functions (core/ops.h): add, mul,
//    matmul, linear, relu, batch_norm, cross_entropy, ... If any input
//    requires a gradient, the op records an autograd Node on its output:
//
//      {name, inputs, backward}     // backward(dL/dout) ADDS dL/dinput
//
//      Tensor W = Tensor::uniform({4, 3}, -1, 1, rng).set_requires_grad();
//      Tensor y = linear(x, W, Tensor());       // [2, 4], y.grad_fn()->name == "linear"
//      Tensor loss = mean(square(y));           // a 1-element tensor
//
// 3. Backward. loss.backward() seeds dL/dloss = 1, sorts the graph
//    topologically with an explicit stack (no recursion: an LSTM over 300
//    steps makes a graph thousands of nodes deep), and calls each node's
//    backward in reverse order. Leaves (parameters) accumulate into .grad()
//    until zero_grad(); the graph and intermediate gradients are freed as the
//    sweep goes.
//
//      loss.backward();
//      W.grad();                                 // dL/dW, shape [4, 3]
//
// 4. No-grad. Inside a NoGradGuard nothing is recorded (evaluation,
//    optimizer updates). detach() gives the same numbers without history.
//
// 5. Parameters carry attributes (ParamAttrs): a learning-rate scale and a
//    weight constraint. The optimizer applies both after every step; that is
//    how BNN latent weights stay clipped to [-1, 1] (layers/quant/).
//
// 6. Checkpoints. save_tensors / load_tensors (core/serialize.h) write named
//    tensors to a versioned file atomically; Module::state() gives the names.
//
// Where to go next: layers/module.h (models), layers/quant/quantizer.h
// (binarization and straight-through estimators), kernels/bitpack.h (the bit
// convention of packed ±1 data), docs/bnn-training.md (a guided tour on
// printed tensors), apps/mnist_mlp.cpp (a full training program).
#pragma once

#include "core/ap2.h"
#include "core/autograd.h"
#include "core/fileio.h"
#include "core/profiler.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/serialize.h"
#include "core/tensor.h"
