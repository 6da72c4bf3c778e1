#include "layers/embedding.h"

#include <cstring>

#include "core/ops.h"

namespace qnn {

Embedding::Embedding(int64_t vocab, int64_t dim, Rng& rng, EmbeddingOptions opt)
    : vocab_(vocab), dim_(dim), opt_(opt) {
  QNN_CHECK(vocab > 0 && dim > 0, "Embedding: sizes must be positive, got " + std::to_string(vocab) + " x " +
                                      std::to_string(dim));
  weight = Tensor::normal({vocab, dim}, 0.f, 1.f, rng);
  if (opt_.freeze_padding) std::memset(weight.data(), 0, (size_t)dim * sizeof(float));
  register_parameter("weight", weight);
}

Tensor Embedding::forward_ids(const std::vector<int32_t>& ids, int64_t batch, int64_t steps) {
  return embedding(weight, ids, batch, steps, opt_.freeze_padding);
}

Tensor Embedding::forward(const Tensor& x) {
  fail("Embedding: takes integer token ids through forward_ids(ids, B, T), not a float tensor (got " +
       (x.defined() ? shape_str(x.shape()) : std::string("undefined")) + ")");
}

LayerSummary Embedding::summary_row() const {
  LayerSummary r = Module::summary_row();
  r.output = "[-1, -1, " + std::to_string(dim_) + "]";
  r.input_bits = 32;  // ids, looked up: no product
  return r;
}

Shape Embedding::output_shape(const Shape& in) const {
  if (in.empty()) return {-1, -1, dim_};
  QNN_CHECK(in.size() == 2, "Embedding: input " + shape_str(in) + " should be ids [B, T]");
  return {in[0], in[1], dim_};
}

}  // namespace qnn
