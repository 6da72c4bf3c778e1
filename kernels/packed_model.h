// kernels/packed_model.h — a deployed (exported) model: the ".qnnx" file and
// its runner. No tensors, no autograd: plain arrays in, logits out.
//
// A PackedModel is a chain of fully connected layers, each "product, then a
// per-channel epilogue". layers/quant/export.h builds one from a trained
// Module (batch norm folded, see below); apps/qnn_infer and apps/bench_mlp
// run it. Both full-precision and binarized models use this one runner.
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
// Loading checks, in this order, and refuses with a message naming the file
// and the problem: size / magic, version, file_bytes vs the real size
// (truncated or trailing bytes), CRC, then every layer's header against the
// byte counts and the chain of dimensions and kinds (a header that lies).
//
// Errors are std::runtime_error (loading) / std::invalid_argument (misuse).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/bitpack.h"

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

enum class LayerType : uint32_t { dense_f32 = 1, dense_binary = 2 };
enum class LayerInput : uint32_t { real = 0, packed = 1, pixels8 = 2, sign = 3 };
const char* layer_type_name(LayerType t);
const char* layer_input_name(LayerInput i);

struct PackedLayer {
  LayerType type = LayerType::dense_f32;
  LayerInput input = LayerInput::real;  // dense_f32: real; dense_binary: packed/pixels8/sign
  int64_t in = 0, out = 0;
  std::vector<float> w_f32;  // dense_f32: [out x in]
  PackedVector w_bits;       // dense_binary: out rows of packed_words(in) words (bitpack.h)
  bool sign_out = false;     // packed +-1 output (thresh/flip), else float output
  std::vector<int32_t> thresh;
  std::vector<uint8_t> flip;
  std::vector<float> bias;   // empty: no bias (float output only)
  bool affine = false;
  std::vector<float> center, scale, shift;
  bool relu = false;

  int weight_bits() const { return type == LayerType::dense_binary ? 1 : 32; }
  // Bytes of this layer's record in the file (header + payload).
  int64_t file_bytes() const;
};

struct PackedModel {
  InputScale input_scale = InputScale::none;
  std::vector<int64_t> input_dims;
  std::vector<PackedLayer> layers;

  bool is_binary() const;            // any dense_binary layer
  std::string kind() const { return is_binary() ? "bnn" : "fp"; }
  int64_t in_features() const;       // layer 0's in
  int64_t num_classes() const;       // last layer's out
  int64_t weight_count() const;      // all weights (not biases / BN)

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
// by barriers rather than fork/joins. Larger batches go layer by layer through
// the blocked kernels (xnor_gemm_sign writing packed activations directly,
// bit-serial GEMM for the 8-bit first layer). All paths give identical results.
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
// tuned separately. Results never depend on the choice. Full-precision models
// always use all threads (BLAS).
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
  bool chain_ = false;  // all binary, packed between layers: the one-region path applies
  Tuner tune_[2];
  int64_t calls_[2] = {0, 0};
  std::vector<float> thresh_f_;  // per layer offset into one array (xnor_gemm_sign wants floats)
  std::vector<int64_t> thresh_off_;
  int64_t max_width_ = 0, cap_ = 0;
  // scratch: float activations (2), packed activations (2), input bit planes
  std::vector<float> f_[2];
  PackedVector p_[2];
  PackedVector planes_;
  std::vector<float> logits_;  // predict_u8's
  int fcur_ = 0;  // which f_ holds the (float) model input after staging
};

// Pack n rows of uint8 pixels as 8 bit planes of v = 2p - 255 (the layout of
// kernels/bitserial.h pack_planes with bits = 8; identical output).
void pack_pixel_planes(const uint8_t* x, int64_t n, int64_t K, uint64_t* out);

}  // namespace qnn::kernels
