// kernels/packed_model.h — a deployed (exported) model: the ".qnnx" file and
// its runner. No tensors, no autograd: plain arrays in, logits out.
//
// A PackedModel is a chain of fully connected layers, each "product, then a
// per-channel epilogue". layers/quant/export.h builds one from a trained
// Module (batch norm folded, see below); apps/qnn_infer and apps/bench_mlp
// run it. Full-precision, binarized and k-bit (qnn) models use this one
// runner.
//
// ---- Layers ---------------------------------------------------------------
//   dense_f32    y = x W^T (+ bias), W fp32 [out x in], x real (floats).
//                Computed with the same kernels::sgemm call as the training
//                framework's `linear` op, so it reproduces it bit for bit.
//   dense_binary W is +-1, stored 1 bit per weight (kernels/bitpack.h), and
//                the integer dot product V is computed exactly:
//                  input packed  : x = +-1 from the previous layer's signs,
//                                  V = xnor-popcount dot, y = V
//                  input sign    : x = sign(real input) (sign(0) = +1), packed
//                                  on the fly, y = V
//                  input pixels8 : the model's uint8 input p as the odd 8-bit
//                                  integer v = 2p - 255 = sum_i 2^i s_i (eight
//                                  +-1 bit planes, kernels/bitserial.h),
//                                  V = bit-serial dot, y = V / 256 — exactly
//                                  the training-time value of ((2p-255)/256) . w
//                                  (data/dataset.h, PixelScale::OddOver256).
//   dense_levels W is k-bit (k = wbits, 1..16): the levels v (odd integers,
//                |v| <= Lw = 2^k - 1) of the uniform quantizer with range
//                w_alpha (kernels/level_planes.h), stored k bits per weight as
//                bit planes (kernels/bitserial.h). The weight the training
//                framework multiplies by is wq = (w_alpha * v) / Lw.
//                  input levels    : the float input x quantized with
//                                    (in_bits, in_alpha) to levels u (Lx =
//                                    2^in_bits - 1), dot = u . v exactly by
//                                    bitserial_gemm_f32, then
//                                      y = s * float(dot) (+ bias),
//                                      s = (in_alpha / Lx) * (w_alpha / Lw)
//                                    — layers/quant/binary_linear_op.h
//                                    uniform_linear, the product of a
//                                    QuantLinear whose input and weight
//                                    quantizers are both uniform (needs
//                                    in * Lx * Lw < 2^24, as it does).
//                  input real      : y = x wq^T (+ bias), one sgemm as
//                                    dense_f32 on the weights decoded at
//                                    load — QuantLinear with a real input
//                                    (a first layer): linear(x, wq, b).
//                  input levels_f32: x replaced by its quantizer's output
//                                    xq = (in_alpha * u) / Lx (the floats a
//                                    QuantAct layer outputs), then as input
//                                    real: linear(xq, wq, b) — a QuantLinear
//                                    with no input quantizer after a
//                                    QuantAct (or one whose product is too
//                                    wide for exact integer sums).
//                  (input real / levels_f32 with +-1 weights — wbits 1,
//                  w_alpha 1, i.e. Sign — is QuantLinear's sign_weight path
//                  in training, sign_weight_linear: the product is then
//                  kernels::pm1_gemm_cols, in pm1_gemm.h's summation order.)
//                Float epilogue only (no sign out).
// Epilogue, per output channel n, one of:
//   sign out     +1 iff (V >= thresh[n]) XOR flip[n], else -1; written packed,
//                ready to be the next layer's input. thresh is an integer:
//                the exporter found it by searching the integer range of V for
//                where the training framework's float "BN(y) >= 0" flips, so
//                the fold is exact (see layers/quant/export.h).
//   float out    z = y (+ bias[n] in float); if affine:
//                  z = (z - center[n]) * scale[n] + shift[n]     (float, no FMA)
//                then if relu: z = z > 0 ? z : 0.
//                Batch norm: center = 0, scale/shift = core/ops.h
//                batch_norm_fold (so z = batch_norm_apply(y, scale, shift),
//                bit for bit); shift-based batch norm: center = running mean.
//                (dense_levels with levels input: the bias is already in y,
//                added as in uniform_linear.)
// The last layer must be a float-out layer: its outputs are the logits.
// Predictions are the first maximum of each row of logits (as argmax_rows).
//
// ---- File format, version 1 (little-endian) --------------------------------
//   magic        4 bytes "QNNX"
//   version      u32  1
//   file_bytes   u64  size of the whole file, CRC included
//   kind         u32  0 = fp (no binary layer), 1 = bnn
//   layer_count  u32
//   input_scale  u32  InputScale below
//   input_ndim   u32, then input dims u64 x ndim (their product = layer 0's in)
//   per layer:
//     type u32 (1 dense_f32, 2 dense_binary), input u32 (LayerInput),
//     weight_bits u32 (32 or 1), flags u32 (bit 0 sign_out, 1 bias, 2 affine,
//     3 relu), in u64, out u64, payload_bytes u64, then the payload:
//       weights   dense_f32: f32 [out x in]
//                 dense_binary: u64 [out x ceil(in / 64)] — each row's packed
//                 words (bitpack.h convention, bits >= in are 0), without the
//                 in-memory padding to 512 bits
//       bias      f32 [out]                       if flag bias
//       affine    f32 [out] x 3: center, scale, shift   if flag affine
//       sign_out  i32 [out] thresholds, u8 [out] flips   if flag sign_out
//   crc32        u32  zlib CRC-32 of every byte before it
// ---- File format, version 2 (k-bit models) --------------------------------
// Written only for a model with a dense_levels layer (fp and bnn models stay
// version 1, byte for byte). Version 1 plus:
//   version      u32  2
//   kind         u32  2 = qnn (at least one dense_levels layer; kinds 0 and 1
//                are not written as version 2)
//   layer type   3 = dense_levels; input u32 also 4 (levels), 5 (levels_f32);
//                weight_bits u32 = k (1..16); flags: no sign_out
//   dense_levels payload:
//       weight_alpha f32   the weight quantizer's range (finite, > 0)
//       input_bits   u32   1..16 for inputs levels / levels_f32; 32 for real
//       input_alpha  f32   the input quantizer's range (finite, > 0); 0 for real
//       weights      u64 [out x k x ceil(in / 64)] — row r's plane i (the
//                    bitserial.h layout: packed bit 1 where bit i of the
//                    level index (v + Lw) / 2 is 0; bits >= in are 0),
//                    without the in-memory padding to 512 bits
//       bias, affine as in version 1 (no sign_out arrays)
// The other layer types are stored as in version 1.
// ---- File format, version 3 (models that carry metadata) -------------------
// Written only when PackedModel::meta is not empty (without metadata a file is
// version 1 or 2 as above, byte for byte, and builds that predate metadata
// read it; they refuse version 3 by its number). Version 2 plus, right after
// the input dims:
//   meta_bytes   u32  1 .. kMaxMetaBytes
//   meta         meta_bytes bytes of UTF-8 text (no NUL): what the model was
//                trained on, for the apps (they store JSON; kernels/ treats it
//                as opaque text and only checks that it is UTF-8)
// Every kind (0, 1, 2) and layer type may appear in a version 3 file.
// ---- File format, version 4 (convolutional models) ------------------------
// Written exactly for models with a spatial layer (conv_f32, conv_binary,
// max_pool); models without one keep versions 1-3, byte for byte. Version 3
// plus: the metadata block is always there, meta_bytes may be 0 (none); and
//   layer type   4 = conv_f32 (input real, weight_bits 32),
//                5 = conv_binary (input pixels8 — layer 0 only, zero padding:
//                    the first conv on the image — or packed; weight_bits 1),
//                6 = max_pool (input real or packed, weight_bits 0, flags 0)
//   payload of a spatial layer: the geometry first,
//       C, H, W, O, K, stride, pad, pad_one, pool_k, pool_s   u32 x 10
//     (max_pool: O = K = pad = pad_one = 0, stride 1, pool_k >= 1), then
//       weights   conv_f32: f32 [O x C x K x K]
//                 conv_binary: u64 [O x ceil(C*K*K / 64)], rows in (c, ky, kx)
//                 order, bitpack.h convention, bits >= C*K*K are 0
//       bias, affine, sign_out arrays as in version 1, with O entries each
//   in = C*H*W; out = O*PH*PW (max_pool: C*PH*PW), PH = (OH - pool_k) /
//   pool_s + 1 with a pool, else OH (likewise PW).
// Runner semantics: conv_f32 is core/ops_conv.cpp conv2d's forward (the same
// im2col + sgemm calls, the same per-thread image split and grouping, so the
// sums round alike); conv_binary's sums are exact integers V (packed input:
// XNOR-popcount, kernels/packed_conv.h, with the exact zero-padding
// correction; pixels8: the pm1 look-up product on (2p - 255)/256, exact
// multiples of 1/256, y = V / 256); the pool takes the max of the sums, then
// the epilogue runs per output channel as for dense layers (sign out: the
// pooled V against the integer threshold, written packed NHWC). max_pool of
// packed signs is the AND of the window's bits (max of +-1 values); of floats,
// kernels/im2col.h max_pool_forward (MaxPool2d's loop).
// ---- File format, version 5 (k-bit convolutions) ---------------------------
// Written exactly for models with a conv_levels layer; others keep versions
// 1-4, byte for byte (and builds that predate it refuse version 5 by its
// number). Version 4 plus:
//   layer type   7 = conv_levels (input real, levels or levels_f32 as for
//                    dense_levels; weight_bits u32 = k, 1..16; flags: no
//                    sign_out)
//   conv_levels payload: the geometry (as version 4), then
//       weight_alpha f32, input_bits u32, input_alpha f32  (as dense_levels)
//       weights      u64 [O x k x ceil(C*K*K / 64)] — row o's plane i, rows in
//                    (c, ky, kx) order, the dense_levels plane layout
//       bias, affine as in version 1, O entries each (no sign_out arrays)
// conv_levels is QuantConv2d with k-bit weights (layers/quant/quant_conv.h),
// in the arithmetic its eval forward used:
//   input real       no input quantizer (a first layer on the image): conv2d
//                    (x, wq) + bias, wq = (w_alpha * v) / Lw decoded at load —
//                    conv_f32's arithmetic on the decoded weights;
//   input levels_f32 zero padding (or sums too wide to be exact): x replaced
//                    by the input quantizer's floats, then as input real;
//   input levels     one-padding (pad_one; or pad 0) with exact sums: the
//                    levels u of x (padded taps hold the top level +Lx), the
//                    integer dot of u and v exactly, then y = s * dot + bias,
//                    s = (in_alpha / Lx) * (w_alpha / Lw) — uniform_linear's
//                    rounding, pixel by pixel.
// Then, as for every conv: the max-pool of y (pool_k > 0), the float epilogue
// (affine, relu) per output channel.
// Loading checks, in this order, and refuses with a message naming the file
// and the problem: size / magic, version (1 to 5), file_bytes vs the real
// size (truncated or trailing bytes), CRC, then every layer's header against
// the byte counts, the ranges of bits and alphas, the padding bits, the chain
// of dimensions and kinds, the metadata block (length, UTF-8), and the
// kind / version against the layers (a header that lies).
//
// Errors are std::runtime_error (loading) / std::invalid_argument (misuse).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/bitpack.h"
#include "kernels/packed_conv.h"

namespace qnn::kernels {

// How the model's uint8 input becomes numbers (the pixel scaling it was
// trained with; values as data/dataset.h scale_pixel computes them).
enum class InputScale : uint32_t {
  none = 0,              // float input only (run_u8 refuses)
  odd_over_256 = 1,      // (2p - 255) / 256
  minus_one_to_one = 2,  // p / 127.5 - 1
  zero_to_one = 3,       // p / 255
};
const char* input_scale_name(InputScale s);
// Pixel p under the scaling, with data/dataset.h's arithmetic. Throws for none.
float scale_input_pixel(InputScale s, uint8_t p);

enum class LayerType : uint32_t {
  dense_f32 = 1,
  dense_binary = 2,
  dense_levels = 3,
  conv_f32 = 4,     // version 4: NCHW float conv (conv2d's arithmetic)
  conv_binary = 5,  // version 4: +-1 weights, 1 bit each; pixels8 or packed (NHWC) input
  max_pool = 6,     // version 4: k x k max-pool of float (NCHW) or packed (NHWC) maps
  conv_levels = 7,  // version 5: k-bit weights, k bits each; real / levels / levels_f32 input
};
enum class LayerInput : uint32_t { real = 0, packed = 1, pixels8 = 2, sign = 3, levels = 4, levels_f32 = 5 };
const char* layer_type_name(LayerType t);
const char* layer_input_name(LayerInput i);

// Geometry of a spatial layer (conv_f32, conv_binary, max_pool). Input
// image [C, H, W]; a conv has O output channels, K x K windows, stride,
// zero padding `pad` (pad_one: padded taps of a packed input hold +1
// instead of 0 — QuantConv2d's one-padding); then, if pool_k > 0, a
// pool_k x pool_k max-pool (stride pool_s, no padding) of the product's sums
// BEFORE the epilogue (BinaryNet's conv -> max-pool -> BN -> sign). A
// max_pool layer uses C, H, W, pool_k, pool_s only.
struct SpatialGeom {
  int64_t C = 0, H = 0, W = 0, O = 0, K = 0, stride = 1, pad = 0;
  bool pad_one = false;
  int64_t pool_k = 0, pool_s = 0;
  int64_t OH() const { return (H + 2 * pad - K) / stride + 1; }  // conv output (before the pool)
  int64_t OW() const { return (W + 2 * pad - K) / stride + 1; }
  int64_t taps() const { return C * K * K; }
};

struct PackedLayer {
  LayerType type = LayerType::dense_f32;
  // dense_f32: real; dense_binary: packed/pixels8/sign; dense_levels: real/levels/levels_f32
  LayerInput input = LayerInput::real;
  int64_t in = 0, out = 0;
  std::vector<float> w_f32;  // dense_f32: [out x in]
  PackedVector w_bits;       // dense_binary: out rows of packed_words(in) words (bitpack.h)
  // dense_levels: the weight levels, out x wbits plane rows of packed_words(in)
  // words (bitserial.h plane_packed_words / kernels/level_planes.h layout),
  // of the uniform quantizer (wbits, w_alpha); the input quantizer (in_bits,
  // in_alpha) for inputs levels / levels_f32, (32, 0) for real input.
  PackedVector w_planes;
  int wbits = 0;
  float w_alpha = 0.f;
  int in_bits = 32;
  float in_alpha = 0.f;
  bool sign_out = false;     // packed +-1 output (thresh/flip), else float output
  std::vector<int32_t> thresh;
  std::vector<uint8_t> flip;
  std::vector<float> bias;   // empty: no bias (float output only)
  bool affine = false;
  std::vector<float> center, scale, shift;
  bool relu = false;
  // conv_f32 / conv_binary / max_pool: the geometry. w_f32 is [O, C, K, K]
  // (PyTorch's layout), w_bits O rows of packed_words(C*K*K) words in the
  // same (c, ky, kx) order; bias / affine / thresh / flip have one entry per
  // OUTPUT CHANNEL (O), not per output value. in = C*H*W; out = O*PH*PW
  // (PH, PW after the pool). Float outputs are NCHW (so a flatten is free),
  // packed outputs NHWC (kernels/packed_conv.h); a dense layer after packed
  // NHWC maps reads them in NCHW flatten order (the runner re-packs).
  SpatialGeom geom;

  bool spatial() const {
    return type == LayerType::conv_f32 || type == LayerType::conv_binary || type == LayerType::max_pool ||
           type == LayerType::conv_levels;
  }
  // dense_levels or conv_levels: k-bit weights in w_planes.
  bool levels() const { return type == LayerType::dense_levels || type == LayerType::conv_levels; }
  // Entries of the per-channel epilogue arrays: out (dense), O (conv), 0 (max_pool).
  int64_t channels() const { return type == LayerType::max_pool ? 0 : spatial() ? geom.O : out; }
  // Output maps [channels, PH, PW] of a spatial layer (after its pool).
  int64_t out_channels() const { return type == LayerType::max_pool ? geom.C : geom.O; }
  int64_t out_h() const;
  int64_t out_w() const;
  // Packed +-1 output: a sign epilogue, or a max_pool of packed input.
  bool packed_out() const { return sign_out || (type == LayerType::max_pool && input == LayerInput::packed); }
  int weight_bits() const {
    return type == LayerType::dense_binary || type == LayerType::conv_binary ? 1
           : levels()                                                        ? wbits
           : type == LayerType::max_pool                                     ? 0
                                                                              : 32;
  }
  int64_t weight_count() const {
    return type == LayerType::max_pool ? 0 : spatial() ? geom.O * geom.taps() : in * out;
  }
  // Bytes of this layer's record in the file (header + payload).
  int64_t file_bytes() const;
  // dense_levels / conv_levels: the weights as the training framework
  // multiplies by them, (w_alpha * v) / Lw as floats [out x in] ([O x C*K*K]
  // for a conv; kernels/level_planes.h level_value). Throws
  // std::invalid_argument for other layer types.
  std::vector<float> level_weights() const;
  // The same weights' odd-integer levels v as floats (exact).
  std::vector<float> level_integers() const;
};

// Largest metadata string a .qnnx file (or a core/serialize.h checkpoint) may
// carry: it describes a model (data set, shapes, flags); it is not for data.
constexpr size_t kMaxMetaBytes = size_t(1) << 20;
// Why `meta` cannot be stored as metadata, or "" if it can: longer than
// kMaxMetaBytes, a NUL byte, or not valid UTF-8 (overlong forms, surrogates
// and code points above U+10FFFF are invalid). Empty text is fine ("none").
std::string meta_problem(const std::string& meta);

struct PackedModel {
  InputScale input_scale = InputScale::none;
  std::vector<int64_t> input_dims;
  std::vector<PackedLayer> layers;
  // Opaque text stored with the model (format version 3); empty: none. The
  // apps put JSON here (apps/common/model_meta.h: data set, input shape,
  // classes, training flags) so a model can say what it was trained on.
  std::string meta;

  bool is_binary() const;            // any dense_binary or conv_binary layer
  bool is_spatial() const;           // any conv / pool layer (format version 4)
  bool has_levels() const;           // any dense_levels / conv_levels layer (a k-bit model)
  bool has_conv_levels() const;      // any conv_levels layer (format version 5)
  // "qnn" with a k-bit layer, else "bnn" with a binary one, else "fp".
  std::string kind() const { return has_levels() ? "qnn" : is_binary() ? "bnn" : "fp"; }
  int64_t in_features() const;       // layer 0's in
  int64_t num_classes() const;       // last layer's out
  int64_t weight_count() const;      // all weights (not biases / BN)
  int64_t weight_storage_bits() const;  // sum of weights x weight_bits(): 32, 1 or k per weight

  // Consistency of the whole chain (dims, kinds, array sizes, ranges).
  // Throws std::invalid_argument("<what>: ...").
  void validate(const std::string& what = "packed model") const;

  // The file image (validates first). Saving atomically is the caller's
  // business (layers/quant/export.h uses core/fileio.h write_file_atomic).
  std::string to_bytes() const;
  // Parse a file image; `name` (the path) starts every error message.
  static PackedModel from_bytes(const std::string& bytes, const std::string& name);
  static PackedModel load(const std::string& path);
};

// zlib-compatible CRC-32 (polynomial 0xEDB88320), crc32(0, data, n) in zlib's terms.
uint32_t crc32_zlib(const void* data, size_t n, uint32_t crc = 0);

// Runs a PackedModel. Holds scratch buffers sized for the largest batch seen,
// so one runner must not be used by two threads at once (use one per thread;
// each call itself runs in parallel with up to kernels::set_num_threads threads).
//
// Batches of up to kSmallBatch rows run in ONE OpenMP parallel region for the
// whole network: each thread owns a fixed slice of every layer's output
// channels (whole 64-bit output words), so its share of the packed weights
// stays in its own core's cache from call to call, and layers are separated
// by barriers rather than fork/joins. Larger batches — and every batch of a
// model with a dense_f32 or dense_levels layer — go layer by layer through
// the blocked kernels (xnor_gemm_sign writing packed activations directly;
// the 8-bit first layer as bit-serial GEMM, or above kSmallBatch rows as the
// table look-up product of kernels/pm1_gemm.h on (2p - 255)/256, whose sums
// are exact; bit-serial GEMM for k-bit layers; sgemm for float products).
// All paths give identical results.
//
// Threads. A batch-1 call takes tens of microseconds, so on a shared machine a
// parallel call is only as fast as its most-delayed thread: when another
// process holds a core, one thread can beat two many times over (measured:
// 23k vs 50 images/s with OpenMP's spinning barriers and two busy neighbours).
// ThreadPolicy::adaptive (the default, for binary models) therefore measures
// both choices as it runs — one thread, or all of kernels::num_threads() —
// by their mean time per row over windows of calls (means, not medians: rare
// long stalls are what hurts throughput), keeps the faster, and tries the
// other one now and then: a short trial, abandoned at once if clearly slower;
// a switch must then be confirmed over a full window or it is undone; trials
// get exponentially rarer while they keep losing. Small and large batches are
// tuned separately. Results never depend on the choice. Models with a float
// product (dense_f32, or dense_levels with input real / levels_f32) always
// use all threads: kernels::sgemm splits its work by the thread count, and
// reproduces the training framework (which ran it on num_threads()) only with
// the same split (ThreadPolicy::one still forces one thread).
enum class ThreadPolicy { adaptive, all, one };

class PackedRunner {
 public:
  static constexpr int64_t kSmallBatch = 16;
  explicit PackedRunner(PackedModel m);
  const PackedModel& model() const { return m_; }

  void set_thread_policy(ThreadPolicy p) { policy_ = p; }
  ThreadPolicy thread_policy() const { return policy_; }
  // Calls so far that ran on one thread / on all threads (probes included).
  int64_t calls_one_thread() const { return calls_[0]; }
  int64_t calls_all_threads() const { return calls_[1]; }

  // Per-layer profile, off by default (bench_cnn --profile): while on, the
  // layer-by-layer path (run_large: every CNN, every batch above kSmallBatch)
  // adds each layer's CPU seconds of the calling thread (all of its work with
  // one thread, and not inflated by preemption) to layer_seconds()[i] (the flatten re-pack
  // of a dense layer after packed maps counts to that dense layer); the
  // one-region small-batch path is not split by layer. Turning it on clears
  // the sums. Results do not depend on it.
  void set_profile(bool on);
  const std::vector<double>& layer_seconds() const { return prof_; }

  // Reference path for sign-out binary convs (tests, profiles): their sums as
  // float NCHW planes (packed_conv_forward; pixels8: the pm1 look-up product),
  // then sign_max_pool_nhwc — instead of integer pixel-major rows pooled and
  // thresholded along the channels. The logits are the same bits either way.
  void set_reference_conv(bool on) { ref_conv_ = on; }

  // x: n rows of in_features() bytes (pixels), scaled by the model's
  // input_scale; logits: n rows of num_classes() floats.
  void logits_u8(const uint8_t* x, int64_t n, float* logits);
  // x: n rows of in_features() floats. A pixels8 first layer needs the exact
  // values (2p - 255) / 256 (else std::invalid_argument).
  void logits_f32(const float* x, int64_t n, float* logits);
  // First maximum of each row of logits.
  void predict_u8(const uint8_t* x, int64_t n, int32_t* labels);

 private:
  void run(int64_t n, float* logits);
  void execute(bool small, bool all_threads, int64_t n, float* logits);
  void run_small(int64_t n, float* logits, int threads);
  void run_large(int64_t n, float* logits);
  void reserve(int64_t n);

  // Per-path (small / large batch) state of the adaptive thread choice.
  struct Tuner {
    int best = -1;                 // 0 = one thread, 1 = all threads; -1: not started
    double win_sum = 0;            // seconds and rows of the best choice's current window
    int64_t win_rows = 0, win_calls = 0;
    double best_cost = 0;          // seconds per row of the best choice, last full window
    int64_t interval = 0;          // calls per window between trials
    int trial_left = 0;            // > 0: trying the other choice
    double trial_sum = 0;
    int64_t trial_rows = 0;
    bool probation = false;        // just switched: confirm over one full window
    double prev_cost = 0;          // the cost of the choice we switched away from
    int64_t prev_interval = 0;
  };
  PackedModel m_;
  ThreadPolicy policy_ = ThreadPolicy::adaptive;
  bool profile_ = false;
  bool ref_conv_ = false;
  std::vector<double> prof_;  // per layer: seconds (set_profile)
  bool chain_ = false;  // all binary, packed between layers: the one-region path applies
  bool sgemm_ = false;  // some layer is a float product (sgemm): no adaptive thread choice
  Tuner tune_[2];
  int64_t calls_[2] = {0, 0};
  std::vector<float> thresh_f_;  // per layer offset into one array (xnor_gemm_sign wants floats)
  std::vector<int64_t> thresh_off_;
  int64_t max_width_ = 0, cap_ = 0;
  // per layer: dense_levels / conv_levels weights decoded to floats (sgemm
  // inputs; conv_levels with levels input: the integer levels v themselves)
  std::vector<std::vector<float>> wdec_;
  // scratch: float activations (2), packed activations (2), input bit planes
  // (pixels8 first layer), k-bit input level planes (dense_levels, levels input)
  std::vector<float> f_[2];
  PackedVector p_[2];
  PackedVector planes_, lplanes_;
  int64_t lplane_words_ = 0;  // per row, the largest levels-input layer's
  std::vector<float> logits_;  // predict_u8's
  // CNN layers (kernels/packed_conv.h): per layer, the packed conv weights
  // (conv_binary with packed input); scratch for sums, pooled sums, patch rows.
  std::vector<PackedConvWeights> cw_;
  // conv_binary with a sign epilogue (packed_cnn.cpp sign_conv_layer): the
  // integer sums go pixel-major (one row of O per output pixel) straight into
  // the pool / threshold / pack. base[case * O + o] = K minus the zero-padding
  // correction of border case `case` (pcase[p]: output pixel p's case); for a
  // pixels8 layer, pm1 = the +-1 weights as int32 [taps x round_up(O, 8)].
  struct SignConv {
    std::vector<int32_t> base, pcase, pm1;
    int64_t opad = 0;
  };
  std::vector<SignConv> sc_;
  std::vector<int32_t> vsum_, itaps_;  // scratch: pixel-major sums, integer patch rows
  PackedVector patches_;
  void sign_conv_layer(size_t i, int64_t n, int& fi, int& pi);
  void prepare_sign_conv(size_t i);
  int64_t max_pwords_ = 0;  // per row: the largest packed activation (dense rows or NHWC maps)
  std::vector<float> sums_, pooled_, rows_, cols_;
  std::vector<int32_t> arg_;
  void spatial_layer(size_t i, int64_t n, int& fi, int& pi);
  // conv2d's forward of layer L's geometry with weights w [O, C*K*K] and L.bias.
  void conv_f32_forward(const PackedLayer& L, const float* w, const float* x, int64_t n, float* y);
  // conv_levels with levels input: y [n, O, OH, OW] = s * (u . v) + bias, exact sums.
  void conv_levels_exact(size_t i, float* x, int64_t n, float* y);
  int fcur_ = 0;  // which f_ holds the (float) model input after staging
  bool pix_f32_ = false;  // pixels8 model: f_[0] also holds (2p - 255) / 256 (large batches)
};

// Packed NHWC maps (kernels/packed_conv.h) [n, H, W, pixel_words(C)] ->
// packed rows in NCHW flatten order (bit c*H*W + y*W + x), row stride
// packed_words(C*H*W), pad bits 0: a dense layer's input after a conv.
void nhwc_to_flat_rows(const uint64_t* x, int64_t n, int64_t C, int64_t H, int64_t W, uint64_t* rows);

// Pack n rows of uint8 pixels as 8 bit planes of v = 2p - 255 (the layout of
// kernels/bitserial.h pack_planes with bits = 8; identical output).
void pack_pixel_planes(const uint8_t* x, int64_t n, int64_t K, uint64_t* out);

}  // namespace qnn::kernels
