// apps/common/dist.cpp — see dist.h. The only file of qnn that calls MPI.
#include "apps/common/dist.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
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

// ---- the shared-memory window (ranks on one host) -------------------------------

struct SliceAccumulator::Shm {
#ifdef QNN_HAVE_MPI
  MPI_Comm comm = MPI_COMM_NULL;  // the ranks of this host: all of them, in rank order
  MPI_Win win = MPI_WIN_NULL;
#endif
  std::vector<const float*> buckets;  // every rank's bucket, in rank order
  float* staging = nullptr;           // grad_n_ floats (rank 0's segment): optimizer state at the epoch's end
  float* params = nullptr;            // sharded: the parameters themselves, one copy for all ranks (rank 0's segment)
  // Every rank's writes before, every rank's reads after.
  void sync() {
#ifdef QNN_HAVE_MPI
    MPI_Win_sync(win);
    MPI_Barrier(comm);
    MPI_Win_sync(win);
#endif
  }
};

namespace {
bool shm_wanted() {
  const char* e = std::getenv("QNN_DIST_SHM");
  return !(e && std::strcmp(e, "0") == 0);
}
}  // namespace

SliceAccumulator::SliceAccumulator(Module& model, int micro, Optimizer* opt)
    : micro_(micro), slices_(g_size * micro), opt_(opt) {
  QNN_CHECK(micro >= 1, "--micro-batches must be >= 1");
  params_ = model.parameters();
  for (auto& [n, t] : model.named_buffers()) buffers_.push_back(t);
  for (auto& [n, r] : model.named_rngs()) rngs_.push_back(r);
  for (const Tensor& p : params_) first_.push_back(grad_n_), grad_n_ += p.numel();
  for (const Tensor& b : buffers_) buf_n_ += b.numel();
  bucket_n_ = grad_n_ + (int64_t)params_.size() + slices_ * slot_n();
  start_buffers_.resize((size_t)buf_n_);
#ifdef QNN_HAVE_MPI
  if (g_size > 1 && g_local == g_size && shm_wanted()) {
    auto shm = std::make_unique<Shm>();
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &shm->comm);
    int n = 0;
    MPI_Comm_size(shm->comm, &n);
    if (n == g_size) {
      const bool shard = opt_ && opt_->can_shard();
      // Sharded, the parameters live in the window too (one copy, each
      // parameter 64-byte aligned): every rank updates its shard in place
      // and, after a barrier, reads the others' updates where they were
      // written — no exchange of parameters at all.
      int64_t pn = 0;
      if (shard)
        for (const Tensor& p : params_) param_off_.push_back(pn), pn += (p.numel() + 15) / 16 * 16;
      const int64_t mine = bucket_n_ + (g_rank == 0 ? grad_n_ + (shard ? pn + 16 : 0) : 0);
      float* base = nullptr;
      MPI_Win_allocate_shared((MPI_Aint)(sizeof(float) * mine), (int)sizeof(float), MPI_INFO_NULL, shm->comm, &base,
                              &shm->win);
      MPI_Win_lock_all(MPI_MODE_NOCHECK, shm->win);
      for (int q = 0; q < g_size; ++q) {
        MPI_Aint bytes = 0;
        int unit = 0;
        float* b = nullptr;
        MPI_Win_shared_query(shm->win, q, &bytes, &unit, &b);
        shm->buckets.push_back(b);
        if (q == 0) shm->staging = b + bucket_n_;
      }
      bucket_ = base;
      std::fill(bucket_, bucket_ + bucket_n_, 0.f);
      tail_sum_.resize((size_t)(bucket_n_ - grad_n_));
      sharded_ = shard;
      if (sharded_) {
        const auto [b, e] = shard_of(g_rank);
        opt_->set_shard(b, e);
        const uintptr_t at = reinterpret_cast<uintptr_t>(shm->staging + grad_n_);
        shm->params = reinterpret_cast<float*>((at + 63) / 64 * 64);
        // Every rank holds the same values (same seed, or the same
        // checkpoint): rank 0 writes them, the others read them after the
        // barrier below.
        for (size_t i = 0; i < params_.size(); ++i)
          params_[i].rebind_storage(shm->params + param_off_[i], g_rank == 0);
      }
      shm_ = std::move(shm);
      shm_->sync();  // every bucket zeroed (and the parameters written) before anyone writes or reads
    } else {
      MPI_Comm_free(&shm->comm);
    }
  }
#endif
  if (!bucket_) {
    own_bucket_.assign((size_t)bucket_n_, 0.f);
    bucket_ = own_bucket_.data();
  }
}

SliceAccumulator::~SliceAccumulator() {
  if (sharded_ && opt_) opt_->clear_shard();
  // The parameters leave the window (each rank its own copy again) before
  // it is freed; unwinding, the window stays mapped until the process ends.
  if (shm_ && shm_->params)
    for (Tensor& p : params_) p.rebind_storage(nullptr, true);
#ifdef QNN_HAVE_MPI
  // Freeing the window is collective: only when every rank gets here (not
  // while an error unwinds one rank; it exits and MPI_Abort ends the job).
  if (shm_ && std::uncaught_exceptions() == 0) {
    shm_->sync();  // every rank has copied the parameters out
    MPI_Win_unlock_all(shm_->win);
    MPI_Win_free(&shm_->win);
    MPI_Comm_free(&shm_->comm);
  }
#endif
}

std::string SliceAccumulator::describe() const {
  const std::string ranks = std::to_string(g_size) + " ranks";
  if (g_size == 1) return std::to_string(slices_) + " micro-batches per step, gradients summed in slice order";
  if (shm_)
    return ranks + " on one host: gradients summed in shared memory" +
           (sharded_ ? ", optimizer step sharded (1/" + std::to_string(g_size) + " of the parameters per rank)"
                     : " (whole optimizer step on every rank: the optimizer or a constraint is not elementwise)");
  return ranks + ": one " + (g_size == 2 ? "MPI_Allreduce" : "MPI_Allgather") + " of the gradients per step";
}

std::pair<int64_t, int64_t> SliceAccumulator::shard_of(int q) const {
  const int64_t per = ((grad_n_ + g_size - 1) / g_size + 15) / 16 * 16;
  const int64_t b = std::min<int64_t>(grad_n_, (int64_t)q * per);
  return {b, std::min<int64_t>(grad_n_, b + per)};
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
  std::fill(bucket_ + grad_n_, bucket_ + bucket_n_, 0.f);  // flags and every slot: other ranks' stay 0
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
  float* acc = bucket_;
  float* flags = acc + grad_n_;
  // Sharded on one host, one slice per rank: nobody else reads this rank's
  // own shard of the gradients (shm_sum adds it from the parameters'
  // gradients themselves), so only the other elements go to the bucket.
  const auto [lo, hi] = own_shard_local() ? shard_of(g_rank) : std::pair<int64_t, int64_t>{0, 0};
  int64_t at = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    const int64_t n = p.numel();
    // fn(offset in p, count) for the parts of [at, at + n) outside [lo, hi).
    auto outside = [&, lo = lo, hi = hi](auto&& fn) {
      const int64_t e = at + n;
      const int64_t b1 = std::min(e, std::max(at, lo)), a2 = std::max(at, std::min(e, hi));
      if (b1 > at) fn(int64_t(0), b1 - at);
      if (e > a2) fn(a2 - at, e - a2);
    };
    if (p.has_grad()) {
      flags[i] = 1.f;
      const float* g = p.grad_data();
      if (m == 0)
        outside([&](int64_t o, int64_t c) { std::memcpy(acc + at + o, g + o, sizeof(float) * c); });
      else
        for (int64_t j = 0; j < n; ++j) acc[at + j] += g[j];  // slice order: ((g0 + g1) + g2) ...
    } else if (m == 0) {
      outside([&](int64_t o, int64_t c) { std::fill(acc + at + o, acc + at + o + c, 0.f); });
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

// Ranks on one host: the small tail of every bucket (flags, slots) summed
// in rank order into `tail`; the gradient elements this rank needs (its
// shard, or all when the optimizer is not sharded) summed in rank order
// straight into the parameters' gradients.
void SliceAccumulator::shm_sum(float* tail) {
  shm_->sync();  // every rank's bucket complete
  const int64_t tn = bucket_n_ - grad_n_;
  std::memcpy(tail, shm_->buckets[0] + grad_n_, sizeof(float) * tn);
  for (int q = 1; q < g_size; ++q) {
    const float* src = shm_->buckets[q] + grad_n_;
    for (int64_t j = 0; j < tn; ++j) tail[j] += src[j];
  }
  const auto [lo, hi] = sharded_ ? shard_of(g_rank) : std::pair<int64_t, int64_t>{0, grad_n_};
  const std::vector<const float*>& bk = shm_->buckets;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    if (!(tail[i] > 0)) {
      p.zero_grad();  // reached by no slice: the optimizer leaves it alone, as in one pass
      continue;
    }
    const int64_t b = std::max(lo, first_[i]), e = std::min(hi, first_[i] + p.numel());
    float* g = p.grad_data();  // created (zeros) if this rank's slices did not reach p
    const int64_t n = e - b, off = b - first_[i];
    if (n <= 0) continue;
    float* __restrict d = g + off;
    const float* __restrict s0 = bk[0] + b;
    if (!own_shard_local()) {
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16))
      for (int64_t j = 0; j < n; ++j) d[j] = s0[j];
      for (int q = 1; q < g_size; ++q) {
        const float* __restrict sq = bk[q] + b;
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16))
        for (int64_t j = 0; j < n; ++j) d[j] += sq[j];
      }
      continue;
    }
    // d holds this rank's own slice's gradient (its bucket does not): the
    // same sum in rank order, with d in this rank's place.
    if (g_rank == 0) {
      for (int q = 1; q < g_size; ++q) {
        const float* __restrict sq = bk[q] + b;
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16))
        for (int64_t j = 0; j < n; ++j) d[j] += sq[j];
      }
    } else if (g_size == 2) {
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16))
      for (int64_t j = 0; j < n; ++j) d[j] = s0[j] + d[j];
    } else {
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
      for (int64_t j = 0; j < n; ++j) {
        float a = s0[j];
        for (int q = 1; q < g_size; ++q) a += q == g_rank ? d[j] : bk[q][b + j];
        d[j] = a;
      }
    }
  }
}

// Copies the elements of `owner`'s shard that parameter i holds between
// `data` (parameter i's values, or one of its optimizer slots) and the
// staging area, where they sit at their end-to-end positions.
void SliceAccumulator::copy_shard(float* data, size_t i, bool to_staging, int owner) {
  const auto [lo, hi] = shard_of(owner);
  const int64_t b = std::max(lo, first_[i]), e = std::min(hi, first_[i] + params_[i].numel());
  if (e <= b) return;
  float* d = data + (b - first_[i]);
  float* st = shm_->staging + b;
  if (to_staging)
    std::memcpy(st, d, sizeof(float) * (e - b));
  else
    std::memcpy(d, st, sizeof(float) * (e - b));
}

void SliceAccumulator::after_step() {
  // Nobody may write its bucket again while another still reads it; and,
  // sharded, every rank's update of its shard of the shared parameters is
  // complete before anyone's next forward reads them. (Nobody writes the
  // parameters while another still reads them either: the updates come
  // after finish()'s barrier, which every rank reaches after its backward.)
  if (shm_) shm_->sync();
}

void SliceAccumulator::end_epoch() {
  if (!sharded_) return;
  // Each optimizer slot ("<i>.exp_avg", ...) is complete only in its
  // owner's shard: complete them, one slot name at a time, through the
  // staging area, so rank 0's checkpoint holds the whole state.
  // Another rank may still be reading parameters from the staging area
  // (the last after_step): wait for everyone before overwriting it.
  shm_->sync();
  std::vector<std::pair<std::string, Tensor>> st = opt_->state();
  std::vector<std::string> fields;
  for (const auto& [key, t] : st) {
    const size_t dot = key.find('.');
    if (dot == std::string::npos) continue;
    const std::string f = key.substr(dot + 1);
    if (f != "step" && std::find(fields.begin(), fields.end(), f) == fields.end()) fields.push_back(f);
  }
  for (const std::string& f : fields) {
    auto each = [&](auto&& fn) {  // fn(slot data, parameter index) for every "<i>.f"
      for (auto& [key, t] : st) {
        const size_t dot = key.find('.');
        if (dot == std::string::npos || key.substr(dot + 1) != f) continue;
        const size_t i = (size_t)std::stoul(key.substr(0, dot));
        if (i < params_.size() && t.numel() == params_[i].numel()) fn(t.data(), i);
      }
    };
    auto copy = [&](bool to_staging, int owner) {
      each([&](float* d, size_t i) { copy_shard(d, i, to_staging, owner); });
    };
    copy(true, g_rank);
    shm_->sync();
    for (int q = 0; q < g_size; ++q)
      if (q != g_rank) copy(false, q);
    shm_->sync();  // read before the next slot name overwrites the staging area
  }
}

SliceAccumulator::StepTotals SliceAccumulator::finish() {
  const float* acc = bucket_;
  const float* flags = acc + grad_n_;
  if (shm_) {
    shm_sum(tail_sum_.data());  // gradients into the parameters
    flags = tail_sum_.data();
  } else {
#ifdef QNN_HAVE_MPI
    ordered_sum(bucket_, bucket_n_, gathered_);  // the step's one collective
#endif
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
  int64_t at = 0;
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
