// layers/quant/quant.h — everything in layers/quant/ in one include.
#pragma once

#include "layers/quant/constraints.h"
#include "layers/quant/quant_conv.h"
#include "layers/quant/quant_act.h"
#include "layers/quant/quant_linear.h"
#include "layers/quant/quant_mlp.h"
#include "layers/quant/quant_product.h"
#include "layers/quant/quantizer.h"
#include "layers/quant/shift_batchnorm.h"
#include "layers/quant/surrogate.h"
