// apps/common/dist.cpp — see dist.h. The only file of qnn that calls MPI.
#include "apps/common/dist.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/ops.h"

#ifdef QNN_HAVE_MPI
#include <mpi.h>
#endif

namespace qnn::app::dist {

namespace {
bool g_active = false;
int g_rank = 0, g_size = 1, g_local = 1;
bool g_done = false;

#ifdef QNN_HAVE_MPI
void at_exit() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin) return;
  // A rank that leaves before the run finished (an error) would leave the
  // others blocked in a collective forever: end the whole job instead.
  if (!g_done && g_size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
  MPI_Finalize();
}

int to_count(int64_t n, const char* what) {
  QNN_CHECK(n >= 0 && n <= std::numeric_limits<int>::max(),
            std::string("--dist mpi: ") + what + " of " + std::to_string(n) + " values is too large for one MPI message");
  return (int)n;
}

// v[i] = sum over ranks of v[i], added in rank order (rank 0's + rank 1's +
// ...), the same bits on every rank and in every run. Two ranks: one
// addition per element, which is commutative, so MPI_Allreduce is exact.
// More: every rank gathers every v and adds in rank order (MPI_Allreduce
// may associate differently run to run). `all` is scratch space.
void ordered_sum(float* v, int64_t n, std::vector<float>& all) {
  if (g_size == 1 || n == 0) return;
  const int cnt = to_count(n, "a reduction");
  if (g_size == 2) {
    MPI_Allreduce(MPI_IN_PLACE, v, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    return;
  }
  to_count(n * g_size, "a gather");
  all.resize((size_t)n * g_size);
  MPI_Allgather(v, cnt, MPI_FLOAT, all.data(), cnt, MPI_FLOAT, MPI_COMM_WORLD);
  std::memcpy(v, all.data(), sizeof(float) * n);
  for (int q = 1; q < g_size; ++q) {
    const float* src = all.data() + (size_t)q * n;
    for (int64_t i = 0; i < n; ++i) v[i] += src[i];
  }
}
#endif

#ifndef QNN_HAVE_MPI
[[noreturn]] void no_mpi() {
  fail("--dist mpi: this build has no MPI: install libopenmpi-dev and rebuild (scripts/setup.sh installs it; "
       "then meson setup --reconfigure build && ninja -C build)");
}
#endif

}  // namespace

void init(const std::string& mode) {
  if (mode == "none" || mode.empty()) return;
  QNN_CHECK(mode == "mpi", "--dist must be none or mpi, got '" + mode + "'");
#ifndef QNN_HAVE_MPI
  no_mpi();
#else
  if (g_active) return;
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) MPI_Init(nullptr, nullptr);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &g_local);
  MPI_Comm_free(&local);
  g_active = true;
  std::atexit(at_exit);
  if (g_rank != 0) {  // one voice: rank 0 prints (errors still reach stderr)
    std::fflush(stdout);
    const int fd = ::open("/dev/null", O_WRONLY);
    if (fd >= 0) ::dup2(fd, 1), ::close(fd);
  }
#endif
}

bool active() { return g_active; }
int rank() { return g_rank; }
int size() { return g_size; }
bool is_root() { return g_rank == 0; }
int local_size() { return g_local; }
void mark_done() { g_done = true; }

bool have_mpi() {
#ifdef QNN_HAVE_MPI
  return true;
#else
  return false;
#endif
}


std::pair<int64_t, int64_t> split_rows(int64_t n, int parts, int part) {
  const int64_t base = n / parts, extra = n % parts;
  const int64_t b = part * base + std::min<int64_t>(part, extra);
  return {b, b + base + (part < extra ? 1 : 0)};
}

std::pair<int64_t, int64_t> my_rows(int64_t n) { return split_rows(n, g_size, g_rank); }

void check_batch(int64_t batch, int micro) {
  if (micro > 1 && batch % micro != 0)
    fail("--batch " + std::to_string(batch) + " is not a multiple of --micro-batches " + std::to_string(micro) +
         ": every micro-batch takes an equal slice of the batch (use e.g. --batch " +
         std::to_string((batch / micro + 1) * micro) + ")");
  const int64_t k = (int64_t)g_size * micro;
  if (g_size <= 1 || batch % k == 0) return;
  const int64_t up = (batch / k + 1) * k;
  fail("--batch " + std::to_string(batch) + " is not a multiple of the " + std::to_string(g_size) + " MPI ranks" +
       (micro > 1 ? " x --micro-batches " + std::to_string(micro) : std::string()) +
       ": each rank takes an equal slice of every global batch (use e.g. --batch " + std::to_string(up) + ")");
}

// ---- SliceAccumulator ------------------------------------------------------------

namespace {
// The generator state of slice k (k >= 1) or after the step (k = 0): a pure
// function of the step's start state and k.
Rng::State derived_state(const Rng::State& start, int64_t k) {
  Rng r;
  r.set_state(start);
  const uint64_t base = r.next_u64();
  return Rng(base ^ ((uint64_t)k * 0x9e3779b97f4a7c15ULL)).state();
}
}  // namespace

SliceAccumulator::SliceAccumulator(Module& model, int micro) : micro_(micro), slices_(g_size * micro) {
  QNN_CHECK(micro >= 1, "--micro-batches must be >= 1");
  params_ = model.parameters();
  for (auto& [n, t] : model.named_buffers()) buffers_.push_back(t);
  for (auto& [n, r] : model.named_rngs()) rngs_.push_back(r);
  for (const Tensor& p : params_) grad_n_ += p.numel();
  for (const Tensor& b : buffers_) buf_n_ += b.numel();
  bucket_.assign((size_t)(grad_n_ + (int64_t)params_.size() + slices_ * slot_n()), 0.f);
  start_buffers_.resize((size_t)buf_n_);
}

void SliceAccumulator::start_step(int64_t global_rows) {
  global_ = global_rows;
  const auto [b, e] = my_rows(global_rows);
  local_begin_ = b;
  local_rows_ = e - b;
  QNN_CHECK(global_rows >= slices_,
            "a batch of " + std::to_string(global_rows) + " rows cannot be cut into " + std::to_string(slices_) +
                " slices (" + std::to_string(g_size) + " MPI rank(s) x --micro-batches " + std::to_string(micro_) +
                "): use a --batch / --limit-train / --val that leaves at least " + std::to_string(slices_) +
                " rows in every batch");
  std::fill(bucket_.begin() + grad_n_, bucket_.end(), 0.f);  // flags and every slot: other ranks' stay 0
  int64_t at = 0;
  for (const Tensor& t : buffers_) {
    std::memcpy(start_buffers_.data() + at, t.data(), sizeof(float) * t.numel());
    at += t.numel();
  }
  rng_start_.clear();
  for (Rng* r : rngs_) rng_start_.push_back(r->state());
}

std::pair<int64_t, int64_t> SliceAccumulator::slice_rows(int m) const {
  // The global slice rank*M + m, in this rank's rows. Its rows within the
  // global batch are split_rows(global, K, k) when the split is even (what
  // check_batch asks of --batch).
  return split_rows(local_rows_, micro_, m);
}

void SliceAccumulator::begin_slice(int m) {
  const int64_t k = (int64_t)g_rank * micro_ + m;
  if (m > 0) {  // every slice starts from the step's running statistics
    int64_t at = 0;
    for (Tensor& t : buffers_) {
      std::memcpy(t.data(), start_buffers_.data() + at, sizeof(float) * t.numel());
      at += t.numel();
    }
  }
  for (size_t i = 0; i < rngs_.size(); ++i) rngs_[i]->set_state(derived_state(rng_start_[i], k + 1));
  for (Tensor& p : params_) p.zero_grad();  // each slice's gradient from zero, as on its own rank
}

Tensor SliceAccumulator::scale_loss(const Tensor& loss, int m) const {
  const auto [b, e] = slice_rows(m);
  if (e - b == global_) return loss;
  // Two slices: x 0.5, exact. The same float in every process.
  return mul_scalar(loss, (float)((double)(e - b) / (double)global_));
}

void SliceAccumulator::end_slice(int m, float slice_loss, int64_t correct) {
  float* acc = bucket_.data();
  float* flags = acc + grad_n_;
  int64_t at = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    const int64_t n = p.numel();
    if (p.has_grad()) {
      flags[i] = 1.f;
      const float* g = p.grad_data();
      if (m == 0)
        std::memcpy(acc + at, g, sizeof(float) * n);
      else
        for (int64_t j = 0; j < n; ++j) acc[at + j] += g[j];  // slice order: ((g0 + g1) + g2) ...
    } else if (m == 0) {
      std::fill(acc + at, acc + at + n, 0.f);
    }
    at += n;
  }
  const int64_t k = (int64_t)g_rank * micro_ + m;
  float* slot = flags + params_.size() + k * slot_n();
  at = 0;
  for (const Tensor& t : buffers_) {
    std::memcpy(slot + at, t.data(), sizeof(float) * t.numel());
    at += t.numel();
  }
  const auto [b, e] = slice_rows(m);
  slot[buf_n_] = slice_loss;
  slot[buf_n_ + 1] = (float)(e - b);  // <= 2^24 (--batch's range): exact
  slot[buf_n_ + 2] = (float)correct;
}

SliceAccumulator::StepTotals SliceAccumulator::finish() {
#ifdef QNN_HAVE_MPI
  ordered_sum(bucket_.data(), (int64_t)bucket_.size(), gathered_);  // the step's one collective
#endif
  const float* acc = bucket_.data();
  const float* flags = acc + grad_n_;
  int64_t at = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    const int64_t n = p.numel();
    if (flags[i] > 0)
      std::memcpy(p.grad_data(), acc + at, sizeof(float) * n);
    else
      p.zero_grad();  // reached by no slice: the optimizer leaves it alone, as in one pass
    at += n;
  }
  // Each slot holds one slice's values (the other ranks added zeros). The
  // step's running statistics: the mean over the slices, summed in slice
  // order in double (a buffer no slice changed keeps its exact value).
  const float* slots = flags + params_.size();
  StepTotals t;
  double loss_sum = 0;
  for (int64_t k = 0; k < slices_; ++k) {
    const float* s = slots + k * slot_n();
    loss_sum += (double)s[buf_n_] * (double)s[buf_n_ + 1];
    t.rows += (int64_t)s[buf_n_ + 1];
    t.correct += (int64_t)s[buf_n_ + 2];
  }
  t.loss = t.rows ? loss_sum / (double)t.rows : 0;
  at = 0;
  for (Tensor& buf : buffers_) {
    float* d = buf.data();
    for (int64_t j = 0; j < buf.numel(); ++j) {
      double s = 0;
      for (int64_t k = 0; k < slices_; ++k) s += (double)slots[k * slot_n() + at + j];
      d[j] = (float)(s / (double)slices_);
    }
    at += buf.numel();
  }
  for (size_t i = 0; i < rngs_.size(); ++i) rngs_[i]->set_state(derived_state(rng_start_[i], 0));
  return t;
}

}  // namespace qnn::app::dist
