// qnn.h — the whole public API in one include: core, layers (with the
// quantized ones), optimizers, data sets.
//
//     #include <qnn/qnn.h>     // installed: g++ -std=c++20 main.cpp $(pkg-config --cflags --libs qnn)
//                              // in-tree: the build adds build/include/ (see meson.build)
//
// It sits at the top of the tree, next to the folders it gathers, because it
// is above all of them: core/ must not know layers/ (README "Layout"), so
// core/qnn.h is only "all of core/", and this file adds the folders above it.
// Installed, it is ${includedir}/qnn/qnn.h beside ${includedir}/qnn/<folder>/,
// so its "core/qnn.h"-style includes resolve next to it.
//
// Not included: kernels/ (the raw-pointer kernels under the ops; include
// <qnn/kernels/...> to call one directly) and apps/ (programs, not library).
#pragma once

#include "core/qnn.h"

#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv.h"
#include "layers/embedding.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/lstm.h"
#include "layers/module.h"
#include "layers/pool.h"
#include "layers/residual.h"

#include "layers/quant/quant.h"
#include "layers/quant/binary_conv_op.h"
#include "layers/quant/binary_linear_op.h"
#include "layers/quant/export.h"
#include "layers/quant/quant_lstm.h"

#include "optim/optim.h"

#include "data/cifar.h"
#include "data/dataloader.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/image_folder.h"
#include "data/images.h"
#include "data/imdb.h"
#include "data/svhn.h"
