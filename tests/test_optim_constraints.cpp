// tests/test_optim_constraints.cpp — constraints are honoured as given (the
// library's Clip is recognised and fused, a user's replacement or wrapper is
// called by every optimizer) and sharded updates (apps/common/dist.h's
// data-parallel training) equal unsharded ones bit for bit.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/rng.h"
#include "layers/quant/constraints.h"
#include "optim/optim.h"
#include "tests/optim_test_util.h"

using namespace qnn;
using namespace qnn::test;

// ---- constraints are honoured as given ----------------------------------------------

TEST_CASE("constraints: as_clip recognises the library's Clip by type, nothing else") {
  const Clip c{-0.25f, 0.75f};
  std::function<void(float*, int64_t)> f = c;
  REQUIRE(as_clip(f) != nullptr);
  CHECK(as_clip(f)->lo == -0.25f);
  CHECK(as_clip(f)->hi == 0.75f);
  const Constraint k = c;
  REQUIRE(as_clip(k.apply) != nullptr);
  CHECK(as_clip(k.apply)->hi == 0.75f);
  CHECK(k.name == "clip[-0.25, 0.75]");
  // A wrapper around a Clip, a plain function, an empty constraint: not a Clip.
  CHECK(as_clip([c](float* w, int64_t n) { c(w, n); }) == nullptr);
  CHECK(as_clip(clip_pm1) == nullptr);
  CHECK(as_clip({}) == nullptr);
}

TEST_CASE("constraints: a user's constraint replacing a Clip is called by every optimizer") {
  // The user attaches the library clip, then replaces it with their own
  // (records calls, clamps to [-0.5, 0.5]). Every optimizer, including Adam,
  // which fuses the library's Clip, must call the replacement and not clip
  // to the old [-1, 1].
  for (const char* name : {"sgd", "adam", "adamax", "adamax-shift"}) {
    CAPTURE(name);
    Tensor w = param({0.45f, -0.45f, 0.1f, 0.9f});
    Clip{-1.0f, 1.0f}.attach(w);
    int calls = 0;
    std::vector<float> seen;
    w.param_attrs().constraint = [&](float* p, int64_t n) {
      ++calls;
      seen.assign(p, p + n);
      for (int64_t i = 0; i < n; ++i) p[i] = p[i] < -0.5f ? -0.5f : (p[i] > 0.5f ? 0.5f : p[i]);
    };
    w.param_attrs().constraint_name = "clamp[-0.5, 0.5]";
    auto opt = make_optimizer(name, {w}, std::string(name) == "adamax-shift" ? 0x1p-2f : 0.25f);
    for (int step = 1; step <= 3; ++step) {
      set_grad(w, {-1.0f, 1.0f, 0.0f, 0.0f});  // pushes w0 up and w1 down, past +-0.5
      opt->step();
      CHECK(calls == step);
    }
    REQUIRE(seen.size() == 4);
    CHECK(seen[0] > 0.5f);   // the constraint saw the updated, unconstrained values
    CHECK(seen[1] < -0.5f);
    CHECK(w.data()[0] == 0.5f);
    CHECK(w.data()[1] == -0.5f);
    CHECK(w.data()[2] == 0.1f);  // zero gradient: untouched
    CHECK(w.data()[3] == 0.5f);  // 0.9 was outside the user's range: clamped, not kept by a [-1, 1] clip
  }
}

TEST_CASE("constraints: a wrapper around a Clip is called, with the same bits as the fused Clip") {
  // As apps/walkthrough.cpp does: wrap the attached Clip to look at the
  // values the optimizer hands it. The wrapper must see the unclipped update
  // (it used to be skipped by Adam's fused clip), and the result must equal
  // the fused Clip's bit for bit, for every optimizer.
  for (const char* name : {"sgd", "adam", "adamax", "adamax-shift"}) {
    CAPTURE(name);
    const int64_t n = (1 << 15) + 3;  // the OpenMP path of the update loops
    Rng rng(11);
    std::vector<float> w0((size_t)n);
    for (auto& v : w0) v = rng.uniform(-1.0f, 1.0f);
    Tensor fused = param(w0), wrapped = param(w0);
    Clip{-1.0f, 1.0f}.attach(fused);
    Clip{-1.0f, 1.0f}.attach(wrapped);
    ParamAttrs& pa = wrapped.param_attrs();
    const auto clip = pa.constraint;
    int calls = 0;
    float seen_max = 0.0f;
    pa.constraint = [&](float* w, int64_t m) {
      ++calls;
      for (int64_t i = 0; i < m; ++i) seen_max = std::max(seen_max, std::fabs(w[i]));
      clip(w, m);
    };
    const float lr = std::string(name) == "adamax-shift" ? 0x1p-4f : 0.05f;
    auto a = make_optimizer(name, {fused}, lr), b = make_optimizer(name, {wrapped}, lr);
    std::vector<float> g((size_t)n);
    for (int step = 0; step < 3; ++step) {
      for (auto& v : g) v = rng.uniform(-1.0f, 1.0f);
      set_grad(fused, g);
      set_grad(wrapped, g);
      a->step();
      b->step();
    }
    CHECK(calls == 3);
    CHECK(seen_max > 1.0f);  // it saw values beyond the bounds, before clipping
    CHECK(std::memcmp(fused.data(), wrapped.data(), sizeof(float) * (size_t)n) == 0);
  }
}

TEST_CASE("constraints: Clip assigned directly to ParamAttrs is fused and equals a separate Clip pass") {
  const int64_t n = 1000;
  Rng rng(5);
  std::vector<float> w0((size_t)n), g((size_t)n);
  for (auto& v : w0) v = rng.uniform(-0.3f, 0.3f);
  Tensor direct = param(w0), opaque = param(w0);
  direct.param_attrs().constraint = Clip{-0.25f, 0.2f};  // no Constraint wrapper: still a Clip
  REQUIRE(as_clip(direct.param_attrs().constraint) != nullptr);
  opaque.param_attrs().constraint = [](float* w, int64_t m) { Clip{-0.25f, 0.2f}(w, m); };
  Adam a({direct}, 0.02f), b({opaque}, 0.02f);
  for (int step = 0; step < 5; ++step) {
    for (auto& v : g) v = rng.uniform(-1.0f, 1.0f);
    set_grad(direct, g);
    set_grad(opaque, g);
    a.step();
    b.step();
  }
  CHECK(std::memcmp(direct.data(), opaque.data(), sizeof(float) * (size_t)n) == 0);
  CHECK(*std::max_element(direct.data(), direct.data() + n) == 0.2f);
  CHECK(*std::min_element(direct.data(), direct.data() + n) == -0.25f);
}

// ---- sharded updates (data-parallel training, apps/common/dist.h) ----------------

TEST_CASE("base: sharded steps on two replicas, then exchanged, equal unsharded steps bit for bit") {
  // Two "ranks" each hold the whole model (parameters of 7, 13 and 5
  // elements laid end to end: 25) and update only their shard, [0, 11) and
  // [11, 25) — a cut inside the second parameter — then copy each other's
  // shard. Every optimizer, with a clipped parameter and one that gets no
  // gradient, must give the bits of one optimizer updating everything.
  for (const std::string name : {"sgd", "adam", "adamax", "adamax-shift"}) {
    CAPTURE(name);
    Rng rng(11);
    std::vector<std::vector<float>> w0 = {std::vector<float>(7), std::vector<float>(13), std::vector<float>(5)};
    for (auto& w : w0)
      for (auto& v : w) v = rng.uniform(-1.2f, 1.2f);
    auto replica = [&] {
      std::vector<Tensor> ps;
      for (auto& w : w0) ps.push_back(param(w));
      Clip{-1.f, 1.f}.attach(ps[1]);
      return ps;
    };
    std::vector<Tensor> full = replica(), r0 = replica(), r1 = replica();
    OptimizerConfig cfg;
    if (name == "sgd") cfg.momentum = 0.9f;
    auto of = make_optimizer(name, full, 0.05f, cfg), o0 = make_optimizer(name, r0, 0.05f, cfg),
         o1 = make_optimizer(name, r1, 0.05f, cfg);
    REQUIRE(o0->can_shard());
    o0->set_shard(0, 11);
    o1->set_shard(11, 25);
    CHECK(o0->sharded());
    int64_t base = 0;
    std::vector<int64_t> first;
    for (auto& w : w0) first.push_back(base), base += (int64_t)w.size();
    for (int step = 0; step < 5; ++step) {
      for (size_t i = 0; i < 2; ++i) {  // parameter 2 never gets a gradient
        std::vector<float> g(w0[i].size());
        for (auto& v : g) v = rng.uniform(-1.f, 1.f);
        set_grad(full[i], g);
        set_grad(r0[i], g);
        set_grad(r1[i], g);
      }
      of->step();
      o0->step();
      o1->step();
      for (size_t i = 0; i < 3; ++i)  // the exchange: element e comes from its shard's owner
        for (int64_t j = 0; j < full[i].numel(); ++j) {
          const int64_t e = first[i] + j;
          (e < 11 ? r1 : r0)[i].data()[j] = (e < 11 ? r0 : r1)[i].data()[j];
        }
    }
    for (size_t i = 0; i < 3; ++i) {
      CHECK(std::memcmp(full[i].data(), r0[i].data(), sizeof(float) * full[i].numel()) == 0);
      CHECK(std::memcmp(full[i].data(), r1[i].data(), sizeof(float) * full[i].numel()) == 0);
    }
    bool moved = false;
    for (int64_t j = 0; j < 13; ++j) moved = moved || full[1].data()[j] != w0[1][j];
    CHECK(moved);  // the test compares updated values, not untouched ones
    // Step counts advance on both replicas for every parameter with a gradient.
    CHECK(state_entry(*o0, "1.step").item() == 5.f);
    CHECK(state_entry(*o1, "0.step").item() == 5.f);
    o0->clear_shard();
    CHECK(!o0->sharded());
  }
}

TEST_CASE("base: set_shard refuses a constraint that may look at the whole tensor") {
  Tensor p = param({0.5f, -0.5f, 2.0f});
  p.param_attrs().constraint = [](float* w, int64_t n) { clip_pm1(w, n); };  // opaque: maybe a max-norm
  Adam a({p}, 0.1f);
  CHECK(!a.can_shard());
  CHECK_THROWS_WITH_AS(a.set_shard(0, 2), doctest::Contains("elementwise"), Error);
  Tensor q = param({0.5f});
  Adam b({q}, 0.1f);
  CHECK(b.can_shard());
  CHECK_THROWS_AS(b.set_shard(2, 1), Error);
}
