// apps/common/lstm_train.h — the IMDB sentiment LSTM: model builder, the
// recipe's defaults and the whole imdb_lstm run. One copy, used by
// apps/imdb_lstm, the sweep's `--app imdb_lstm` cells and the end-to-end
// tests, so that a sweep cell or a test run IS an imdb_lstm run.
//
// The model (the student report "Investigation and Analysis on Quantized
// Neural Networks", its LSTM table; after Hubara et al., "Quantized Neural
// Networks", JMLR 2018):
//
//   ids [B, maxlen] -> Embedding(vocab, embed) -> LSTM(embed -> hidden), last h_T
//                   -> Linear(hidden, 2) -> cross-entropy over {negative, positive}
//
//   fp : layers/lstm.h's LSTM (sigmoid / tanh gates).
//   qnn: layers/quant/quant_lstm.h's QuantLSTM: W_ih and W_hh quantized to
//        --wbits (1: +-s, k: uniform on [-s, s], s = 1/sqrt(hidden); latent
//        weights clipped to [-s, s], pseudo-gradient --weight-surrogate), the
//        hidden state h_t quantized to --abits INSIDE the recurrence (pseudo-gradient
//        --surrogate), gates hard_sigmoid / hardtanh as the QNN paper's LSTMs,
//        forget-gate bias 0.5 (kLstmForgetBiasHard below: why not 1), a
//        learned scale per gate row of the recurrent product from 0.01
//        (kLstmRecurrentScale below: without it 1 bit does not learn).
//        The embedding and the 2-way head stay full precision: the head holds
//        hidden*2 + 2 weights (0.2 % of the model), its input h_T is already
//        quantized, and a sign head would put logits on a +-hidden scale that
//        cross-entropy cannot use without a batch norm after it.
//
// The data protocol is data/imdb.h's fixed split: 25,000 test reviews, 25,000
// training reviews of which the last --val (balanced) validate; --limit-train
// N keeps the first N of the rest (the order alternates the two classes, so
// every prefix is balanced).
#pragma once

#include <functional>

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

#include "apps/common/flags.h"
#include "apps/common/train_loop.h"
#include "core/rng.h"
#include "data/imdb.h"
#include "layers/lstm.h"

namespace qnn::app {

// ---- the recipe: values of flags the user did not give (apps/imdb_lstm.cpp
// explains the choice) -----------------------------------------------------------
inline constexpr int64_t kLstmVocab = 5000;   // --vocab (the report's)
inline constexpr int64_t kLstmMaxlen = 300;   // --maxlen (the report's)
inline constexpr int64_t kLstmEmbed = 15;     // --embed (the report's)
inline constexpr int64_t kLstmHidden = 100;   // --hidden
inline constexpr int kLstmEpochs = 20;        // --epochs (qnn; a sweep's shared budget)
inline constexpr int kLstmEpochsFp = 30;      // --epochs of --model fp (with its dropout, below)
inline constexpr float kLstmDropoutFp = 0.2f; // --dropout of --model fp (qnn: 0)
inline constexpr float kLstmLrEndFp = 1e-4f;  // --lr-end of --model fp, reached over the run
inline constexpr int64_t kLstmBatch = 64;     // --batch
inline constexpr int64_t kLstmVal = 5000;     // --val (balanced, from the training half)

// --forget-bias: the initial forget-gate bias, chosen so that the forget gate
// starts at ~0.75 with either gate function (keep 3/4 of the cell per step:
// long memory, yet a cell that stays in the linear range of its activation).
//   fp  (sigmoid):      sigmoid(1)          = 0.73  (Jozefowicz et al.; Keras' unit_forget_bias)
//   qnn (hard_sigmoid): clip((0.5 + 1)/2)   = 0.75
// The bias 1 of the smooth LSTM is WRONG for the hard gates: hard_sigmoid(1)
// = 1 exactly, so every cell starts as a pure accumulator c_t = c_{t-1} + i g,
// |c| outgrows [-1, 1] within a few steps, hardtanh(c) saturates and passes no
// gradient (its derivative is 1{|c| <= 1}), and the quantized model sits at
// 50 %. Measured (4,000 reviews, 100 tokens, 3 epochs, 1 thread): hard gates
// at full precision 53.4 % test with bias 1, 65.7 % with 0.46 (fp: 64.8 %);
// 4/4 bits 52.1 % -> 67.4 % with 0.5.
inline constexpr float kLstmForgetBiasSmooth = 1.0f;
inline constexpr float kLstmForgetBiasHard = 0.5f;

// --recurrent-scale (qnn): QuantLSTM's learned per-gate-row scale of the
// recurrent product h_{t-1} q(W_hh)^T, started at this value (0: none).
// Without it a 1-bit LSTM (+-s weights, +-1 hidden state) cannot learn: each
// gate's recurrent sum has a fixed spread of sqrt(hidden) * s = 1 whatever the
// signs, enough to swing every hard gate, and nothing can turn it down
// (layers/quant/quant_lstm.h). Measured (--limit-train 4000 --val 1000
// --maxlen 100 --epochs 8 --threads 1, test accuracy): 1/1 bits 51.5 % without,
// 60.7 / 64.0 / 65.2 % starting at 0.1 / 0.03 / 0.01; 4/4 bits 70.2 % without,
// 74.1 % from 0.03 (fp: 74.0 %). A small start lets the cell first integrate
// the input, and the recurrence grows where it helps.
inline constexpr float kLstmRecurrentScale = 0.01f;

struct LstmConfig {
  std::string model = "fp";  // fp | qnn
  int64_t vocab = kLstmVocab, embed = kLstmEmbed, hidden = kLstmHidden;
  std::optional<int> wbits, abits;            // qnn: default 2/2; fp: 32/32
  std::string surrogate = "hardtanh";         // the hidden state's quantizer
  std::string weight_surrogate = "hardtanh";  // W_ih / W_hh (BinaryNet's clipped STE)
  std::optional<float> forget_bias;           // fp: kLstmForgetBiasSmooth, qnn: kLstmForgetBiasHard
  std::optional<float> recurrent_scale;       // qnn: kLstmRecurrentScale (0: none); fp: none
  std::optional<float> dropout;               // SequenceClassifier's dropout (embedded input, last h), [0, 1); fp 0.2, qnn 0
};

// The range of the quantized LSTM weights: +-1/sqrt(hidden), PyTorch's
// initialisation range. Levels at +-1 would put the recurrent sum of `hidden`
// +-1 products at a spread of ~sqrt(hidden) (10 at hidden 100), where every
// hard-sigmoid gate saturates and passes no gradient (measured: a 1-bit model
// with +-1 weights stays at 50 % for a whole epoch); at +-1/sqrt(hidden) the
// spread is ~1, the gates' linear range. One float per weight matrix, so the
// packed size is the same and a binary product is still XNOR-popcount times s.
float lstm_weight_scale(int64_t hidden);

// Fills wbits / abits / forget_bias for c.model and checks the combination; throws
// qnn::Error naming the flag.
void resolve_lstm_defaults(LstmConfig& c);
// The model above (call resolve_lstm_defaults first).
std::shared_ptr<SequenceClassifier> build_lstm_classifier(const LstmConfig& c, Rng& rng);

// --lr, --lr-end, --loss of flags the user did not give (Adam 2e-3 both
// models, x0.85 per epoch, cross-entropy). Returns the per-epoch factor of the default
// exponential schedule (--lr-end its floor), 0 when the user gave --lr-end or
// another --schedule (then the decay runs from --lr to --lr-end over the run).
float resolve_lstm_training_defaults(const std::string& model, TrainFlags& f);

// ---- the imdb_lstm program --------------------------------------------------------

struct LstmAppOptions {
  std::string data = "datasets/imdb";  // reviews.json or the directory holding it
  int64_t maxlen = kLstmMaxlen;
  LstmConfig lstm;   // --model --vocab --embed --hidden --wbits --abits --surrogate --weight-surrogate
  TrainFlags train;  // the shared flags (epochs, batch, val defaults set by the app)
  bool allow_mismatch = false;
  bool quiet = false;  // tests / sweep: no summary table, no per-epoch lines
  bool epochs_given = true;  // false: --epochs is the app's default, so --model fp takes kLstmEpochsFp
  std::optional<float> lr_decay;  // set by resolve_lstm_app (a second call returns it unchanged)
};

// The flag values of the recipe (epochs, batch, val) in `f`, before parsing.
void set_lstm_flag_defaults(TrainFlags& f);

// Fills every default and checks the combination (--val even, ...);
// returns the per-epoch LR factor. Throws qnn::Error naming the flag.
// Idempotent: options it resolved once are returned as they are.
float resolve_lstm_app(LstmAppOptions& o);

// The resolved configuration as printed and stored (--json "config", the
// checkpoint metadata's "arch"). Call after resolve_lstm_app.
nlohmann::json lstm_config_json(const LstmAppOptions& o, float lr_decay);

// The data for `o` (vocab, maxlen, val, limit_train applied).
ImdbData load_lstm_data(const LstmAppOptions& o);

// The --json "model" object (params, bytes_fp32, bytes_packed, per-layer
// bits); with `print`, the summary table too.
nlohmann::json describe_lstm(Module& model, int64_t maxlen, bool print);

// What `imdb_lstm` does after parsing its flags: resolve, load (or use
// `data`, already loaded with load_lstm_data for these options), print the
// config / data / model, train through run_training, test the
// best-validation model, --save / --json.
struct LstmRunHooks {
  std::string line_prefix, progress_prefix;  // TrainJob's
  bool record_divergence = false;
  bool announce = true;
  std::function<void(int)> epoch_done;  // TrainJob's
};
TrainResult run_imdb_lstm(LstmAppOptions& o, const ImdbData* data = nullptr, const LstmRunHooks& hooks = {});

}  // namespace qnn::app
