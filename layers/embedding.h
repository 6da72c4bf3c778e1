// layers/embedding.h — Embedding: token ids -> learned vectors.
//
//   y[B, T, E] = weight[ids[b, t], :]          weight [V, E]
//
// Token ids are integers end to end, so an Embedding is not called with a
// float Tensor: forward_ids(ids, B, T) takes them (forward(Tensor) refuses).
// Id 0 is padding (data/imdb.h): its row starts at zero and, with
// freeze_padding (the default, PyTorch's padding_idx = 0), never receives a
// gradient, so padded steps feed the recurrence exact zeros.
// Initialisation: N(0, 1), as PyTorch's nn.Embedding.
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "layers/module.h"

namespace qnn {

struct EmbeddingOptions {
  bool freeze_padding = true;  // row 0: zero at init, no gradient
};

class Embedding : public Module {
 public:
  Embedding(int64_t vocab, int64_t dim, Rng& rng, EmbeddingOptions opt = {});
  // ids: B*T ids, row-major [B, T], each in [0, vocab). -> [B, T, dim].
  Tensor forward_ids(const std::vector<int32_t>& ids, int64_t batch, int64_t steps);
  // Refuses: an Embedding takes integer ids (forward_ids), never floats.
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Embedding"; }
  LayerSummary summary_row() const override;
  Shape output_shape(const Shape& in) const override;  // [B, T] -> [B, T, dim]
  int64_t vocab_size() const { return vocab_; }
  int64_t dim() const { return dim_; }
  Tensor weight;  // [vocab, dim]

 private:
  int64_t vocab_, dim_;
  EmbeddingOptions opt_;
};

}  // namespace qnn
