#include "layers/quant/quant_act.h"

namespace qnn {

QuantAct::QuantAct(std::shared_ptr<Quantizer> q) : q_(std::move(q)) {
  QNN_CHECK(q_ != nullptr, "QuantAct: needs a quantizer (got null)");
}

}  // namespace qnn
