// apps/common/lstm_train.cpp — see lstm_train.h.
#include "apps/common/lstm_train.h"

#include <cmath>
#include <cstdio>

#include "apps/common/model_meta.h"
#include "kernels/denormals.h"
#include "kernels/sgemm.h"
#include "layers/basic.h"
#include "layers/linear.h"
#include "layers/quant/quant.h"
#include "layers/quant/quant_lstm.h"

namespace qnn::app {

using json = nlohmann::json;

// ---- the model ---------------------------------------------------------------------

void resolve_lstm_defaults(LstmConfig& c) {
  QNN_CHECK(c.model == "fp" || c.model == "qnn", "--model must be fp or qnn, got '" + c.model + "'");
  if (c.model == "fp") {
    QNN_CHECK(c.wbits.value_or(32) == 32 && c.abits.value_or(32) == 32, "--wbits/--abits need --model qnn");
    c.wbits = c.abits = 32;
  } else {
    if (!c.wbits) c.wbits = 2;
    if (!c.abits) c.abits = 2;
  }
  auto bits_ok = [](int b) { return b == 32 || (b >= 1 && b <= 16); };
  QNN_CHECK(bits_ok(*c.wbits), "--wbits must be 1..16 or 32, got " + std::to_string(*c.wbits));
  QNN_CHECK(bits_ok(*c.abits), "--abits must be 1..16 or 32, got " + std::to_string(*c.abits));
  QNN_CHECK(c.vocab >= 3, "--vocab must be >= 3 (padding, out-of-vocabulary and one word), got " +
                              std::to_string(c.vocab));
  QNN_CHECK(c.embed >= 1 && c.hidden >= 1, "--embed and --hidden must be >= 1");
  if (!c.forget_bias) c.forget_bias = c.model == "fp" ? kLstmForgetBiasSmooth : kLstmForgetBiasHard;
  QNN_CHECK(std::isfinite(*c.forget_bias), "--forget-bias must be a finite number");
  if (c.model == "fp") {
    QNN_CHECK(!c.recurrent_scale || *c.recurrent_scale == 0.f, "--recurrent-scale needs --model qnn");
    c.recurrent_scale = 0.f;
  } else if (!c.recurrent_scale) {
    c.recurrent_scale = kLstmRecurrentScale;
  }
  QNN_CHECK(std::isfinite(*c.recurrent_scale) && *c.recurrent_scale >= 0.f,
            "--recurrent-scale must be a number >= 0 (0: none)");
  if (!c.dropout) c.dropout = c.model == "fp" ? kLstmDropoutFp : 0.f;
  QNN_CHECK(*c.dropout >= 0.f && *c.dropout < 1.f, "--dropout must be in [0, 1), got " + std::to_string(*c.dropout));
  parse_surrogate(c.surrogate);  // throws naming the problem
  parse_surrogate(c.weight_surrogate);
}

float lstm_weight_scale(int64_t hidden) { return 1.0f / std::sqrt((float)hidden); }

std::shared_ptr<SequenceClassifier> build_lstm_classifier(const LstmConfig& c, Rng& rng) {
  QNN_CHECK(c.wbits && c.abits && c.forget_bias, "LstmConfig: call resolve_lstm_defaults before build_lstm_classifier");
  auto emb = std::make_shared<Embedding>(c.vocab, c.embed, rng);
  std::shared_ptr<Module> rnn;
  if (c.model == "fp") {
    rnn = std::make_shared<LSTM>(c.embed, c.hidden, rng);
  } else {
    QuantLSTMOptions q;
    q.gates = LstmGates::hard;
    if (*c.wbits < 32) {
      // Levels on [-s, s], s = lstm_weight_scale (see lstm_train.h); latent
      // weights clipped to it (BinaryNet's clip, at the levels' range): beyond
      // it the clipped straight-through estimator passes no gradient and a
      // weight would stop moving for good.
      const float a = lstm_weight_scale(c.hidden);
      q.weight_quantizer = make_quantizer("uniform", *c.wbits, parse_surrogate(c.weight_surrogate), nullptr, a);
      q.weight_constraint = Clip{-a, a};
    }
    q.hidden_quantizer = quantizer_for_bits(*c.abits, parse_surrogate(c.surrogate));
    q.recurrent_scale = c.recurrent_scale.value_or(0.f);
    rnn = std::make_shared<QuantLSTM>(c.embed, c.hidden, rng, std::move(q));
  }
  // The forget-gate bias (lstm_train.h: kLstmForgetBias*): the layer's init
  // puts 1 there; overwrite with the resolved value for these gates.
  auto* base = dynamic_cast<LSTMBase*>(rnn.get());
  for (int64_t j = c.hidden; j < 2 * c.hidden; ++j) base->bias.data()[j] = *c.forget_bias;
  auto head = std::make_shared<Linear>(c.hidden, 2, rng, LinearOptions{true, "glorot"});
  std::shared_ptr<Module> drop;
  if (c.dropout.value_or(0.f) > 0.f) drop = std::make_shared<Dropout>(*c.dropout, rng);
  return std::make_shared<SequenceClassifier>(emb, rnn, head, drop);
}

float resolve_lstm_training_defaults(const std::string& model, TrainFlags& f) {
  if (!f.optimizer) f.optimizer = "adam";
  if (!f.loss) f.loss = "xent";
  if (!f.lr) f.lr = 2e-3f;
  if (f.lr_end) return 0.0f;  // --lr-end given: the decay runs from --lr to it over the run
  if (model == "fp") {        // with dropout it learns longer: decay over the run to kLstmLrEndFp
    f.lr_end = kLstmLrEndFp;
    return 0.0f;
  }
  f.lr_end = 1e-5f;
  return f.schedule == "exponential" ? 0.85f : 0.0f;
}

// ---- the program -------------------------------------------------------------------

void set_lstm_flag_defaults(TrainFlags& f) {
  f.epochs = kLstmEpochs;
  f.batch = kLstmBatch;
  f.val = kLstmVal;
}

float resolve_lstm_app(LstmAppOptions& o) {
  if (o.lr_decay) return *o.lr_decay;  // resolved: a second resolve would read the filled --lr-end as given
  auto& t = o.train;
  QNN_CHECK(o.maxlen >= 1, "--maxlen must be >= 1, got " + std::to_string(o.maxlen));
  QNN_CHECK(t.val % 2 == 0, "--val must be even (half negative, half positive reviews), got " + std::to_string(t.val));
  resolve_lstm_defaults(o.lstm);
  if (!o.epochs_given && o.lstm.model == "fp") t.epochs = kLstmEpochsFp;
  const float decay = resolve_lstm_training_defaults(o.lstm.model, t);
  resolve_training_flags(t);
  check_output_paths(t);
  o.lr_decay = decay;
  return decay;
}

json lstm_config_json(const LstmAppOptions& o, float lr_decay) {
  const auto& c = o.lstm;
  const auto& t = o.train;
  json j{{"dataset", "imdb"}, {"data", o.data}, {"model", c.model}, {"vocab", c.vocab}, {"maxlen", o.maxlen},
         {"embed", c.embed}, {"hidden", c.hidden}, {"wbits", c.wbits.value_or(32)}, {"abits", c.abits.value_or(32)},
         {"gates", c.model == "fp" ? "sigmoid/tanh" : "hard_sigmoid/hardtanh"}, {"surrogate", c.surrogate},
         {"weight_surrogate", c.weight_surrogate},
         {"forget_bias", c.forget_bias ? json(f2d(*c.forget_bias)) : json(nullptr)},
         {"recurrent_scale", c.recurrent_scale ? json(f2d(*c.recurrent_scale)) : json(nullptr)},
         {"dropout", c.dropout ? json(f2d(*c.dropout)) : json(nullptr)},
         {"weight_scale", c.model == "qnn" && c.wbits.value_or(32) < 32 ? json(f2d(lstm_weight_scale(c.hidden))) : json(nullptr)},
         {"head", "linear fp32"}, {"epochs", t.epochs}, {"batch", t.batch},
         {"optimizer", *t.optimizer}, {"lr", t.lr ? json(f2d(*t.lr)) : json(nullptr)},
         {"lr_end", t.lr_end ? json(f2d(*t.lr_end)) : json(nullptr)}, {"schedule", t.schedule},
         {"loss", t.loss ? json(*t.loss) : json(nullptr)}, {"seed", t.seed}, {"threads", t.threads.value_or(0)},
         {"val", t.val}, {"patience", t.patience}, {"kernels", t.kernels.value_or(true) ? "on" : "off"}};
  if (lr_decay > 0) j["lr_decay"] = f2d(lr_decay);
  if (t.limit_train) j["limit_train"] = *t.limit_train;
  record_weight_decay(j, t);
  return j;
}

ImdbData load_lstm_data(const LstmAppOptions& o) {
  ImdbOptions io;
  io.vocab_size = o.lstm.vocab;
  io.maxlen = o.maxlen;
  io.val = o.train.val;
  ImdbData d = load_imdb(o.data, io);
  QNN_CHECK(d.vocab->size() <= o.lstm.vocab, "imdb: vocabulary larger than --vocab");
  if (o.train.limit_train && *o.train.limit_train < d.train.size()) {
    // The first N: the training order alternates negative / positive.
    const int64_t n = *o.train.limit_train;
    d.train.y.resize((size_t)n);
    d.train.ids.resize((size_t)(n * d.train.maxlen));
  }
  return d;
}

json describe_lstm(Module& model, int64_t maxlen, bool print) {
  const Shape input{-1, maxlen};
  if (print) std::printf("\n%s\n", summary_table(model, input).c_str());
  return model_size_json(model, input);
}

namespace {

// The loop's Feed protocol (train_loop.h's make_feed) over a SequenceLoader:
// epoch(e).batch(i) assembles batch i of epoch e's order on demand.
struct SeqEpochs {
  struct Epoch {
    const SequenceLoader* loader;
    std::vector<int64_t> order;
    int64_t size() const { return loader->num_batches(); }
    SequenceBatch batch(int64_t i) const { return loader->batch(order, i); }
  };
  const SequenceLoader* loader;
  Epoch epoch(int64_t e) const { return Epoch{loader, loader->order(e)}; }
};

std::unique_ptr<Feed> sequence_feed(const SeqEpochs& src) {
  auto fwd = [](Module& m, const SequenceBatch& b) {
    auto* sc = dynamic_cast<SequenceClassifier*>(&m);
    QNN_CHECK(sc, "imdb_lstm: the model is not a SequenceClassifier");
    return sc->forward_ids(b.ids, b.size(), b.steps);
  };
  auto labels = [](const SequenceBatch& b) -> const std::vector<int32_t>& { return b.y; };
  return make_feed(src, fwd, labels);
}

// What a checkpoint of this program is trained on (apps/common/model_meta.h):
// the data set, one sample's shape (maxlen ids), the classes.
json lstm_meta(const json& config, int64_t maxlen) {
  return json{{"dataset", "imdb"}, {"input_shape", {maxlen}}, {"classes", 2},
              {"class_names", {"negative", "positive"}}, {"arch", config}};
}

}  // namespace

TrainResult run_imdb_lstm(LstmAppOptions& o, const ImdbData* data, const LstmRunHooks& hooks) {
  const float lr_decay = resolve_lstm_app(o);
  auto& t = o.train;
  QNN_CHECK(t.export_path.empty(), "--export: the packed .qnnx format holds dense models only, not LSTMs");
  const json config = lstm_config_json(o, lr_decay);
  if (hooks.announce) {
    std::printf("# qnn imdb_lstm | %s | denormals %s\n", kernels::blas_info(), kernels::denormals_name());
    std::printf("# config %s\n", config.dump().c_str());
  }
  std::optional<ImdbData> own;
  if (!data) {
    own.emplace(load_lstm_data(o));
    data = &*own;
  }
  const ImdbData& d = *data;
  if (hooks.announce)
    std::printf("# data %s: train %lld, validation %lld, test %lld reviews; vocabulary %lld, last %lld tokens\n",
                o.data.c_str(), (long long)d.train.size(), (long long)d.val.size(), (long long)d.test.size(),
                (long long)d.vocab->size(), (long long)o.maxlen);
  QNN_CHECK(t.eval_only || d.train.size() > 0, "--data " + o.data + ": no training reviews left");

  // Loaders live here, feeds point at them.
  std::optional<SequenceLoader> train_loader, val_loader;
  if (!t.eval_only) train_loader.emplace(d.train, t.batch, true, t.seed);
  if (!t.eval_only && d.val.size() > 0) val_loader.emplace(d.val, 500, false, 0);
  const SequenceLoader test_loader(d.test, 500, false, 0);
  std::optional<SeqEpochs> train_src, val_src;
  if (train_loader) train_src = SeqEpochs{&*train_loader};
  if (val_loader) val_src = SeqEpochs{&*val_loader};
  const SeqEpochs test_src{&test_loader};

  TrainJob job;
  job.flags = &t;
  const LstmConfig c = o.lstm;
  job.build = [c, seed = t.seed, kern = t.kernels] {
    Rng rng(seed);
    auto net = build_lstm_classifier(c, rng);
    if (auto* q = dynamic_cast<QuantLSTM*>(&net->rnn()); q && kern) q->set_kernels(*kern);  // --kernels on|off
    return std::shared_ptr<Module>(net);
  };
  if (train_src) job.data.train = sequence_feed(*train_src);
  if (val_src) job.data.val = sequence_feed(*val_src);
  job.data.test = sequence_feed(test_src);
  job.config = config;
  job.lr_decay = lr_decay;
  job.meta = lstm_meta(config, o.maxlen);
  job.allow_meta_mismatch = o.allow_mismatch;
  job.load_hint = "the model flags must match the checkpoint's (--model, --wbits, --vocab, --embed, --hidden; a "
                  "qnn LSTM saved without a recurrent scale, e.g. before it existed, loads with --recurrent-scale 0)";
  job.rate_key = "samples_per_s";
  job.rate_unit = "seq/s";
  job.epoch_lines = !o.quiet;
  job.line_prefix = hooks.line_prefix;
  job.progress_prefix = hooks.progress_prefix;
  job.record_divergence = hooks.record_divergence;
  job.announce = hooks.announce;
  job.epoch_done = hooks.epoch_done;
  int64_t params = 0;
  double bytes_packed = 0;
  job.describe_model = [&](Module& model) {
    json mj = describe_lstm(model, o.maxlen, !o.quiet && hooks.announce);
    params = mj["params"].get<int64_t>();
    bytes_packed = mj["bytes_packed"].get<double>();
    return mj;
  };
  job.after_test = [&](Module&, const EvalStats&) {
    if (hooks.announce)
      std::printf("model size: %lld parameters, %.1f KiB fp32, %.1f KiB packed (%.1fx smaller)\n", (long long)params,
                  params * 4.0 / 1024, bytes_packed / 1024, bytes_packed > 0 ? params * 4.0 / bytes_packed : 1.0);
  };
  return run_training(job);
}

}  // namespace qnn::app
