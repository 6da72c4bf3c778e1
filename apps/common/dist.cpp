// apps/common/dist.cpp — see dist.h. The only file of qnn that calls MPI.
#include "apps/common/dist.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/batchnorm.h"  // whole_batch_hook

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

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <>
MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }

int to_count(int64_t n, const char* what) {
  QNN_CHECK(n >= 0 && n <= std::numeric_limits<int>::max(),
            std::string("--dist mpi: ") + what + " of " + std::to_string(n) + " values is too large for one MPI message");
  return (int)n;
}

// v[i] = sum over ranks of v[i], the same bits on every rank and in every run.
// Two ranks: one addition per element, which is commutative, so
// MPI_Allreduce is exact-order already. More: gather to rank 0, add in rank
// order, broadcast (MPI_Allreduce may associate differently run to run).
template <class T>
void ordered_sum(T* v, int64_t n) {
  if (g_size == 1 || n == 0) return;
  const int cnt = to_count(n, "a reduction");
  if (g_size == 2) {
    MPI_Allreduce(MPI_IN_PLACE, v, cnt, mpi_type<T>(), MPI_SUM, MPI_COMM_WORLD);
    return;
  }
  std::vector<T> all(g_rank == 0 ? (size_t)n * g_size : 0);
  MPI_Gather(v, cnt, mpi_type<T>(), all.data(), cnt, mpi_type<T>(), 0, MPI_COMM_WORLD);
  if (g_rank == 0)
    for (int q = 1; q < g_size; ++q) {
      const T* src = all.data() + (size_t)q * n;
      for (int64_t i = 0; i < n; ++i) v[i] += src[i];  // v: rank 0's own values
    }
  MPI_Bcast(v, cnt, mpi_type<T>(), 0, MPI_COMM_WORLD);
}
#endif

[[noreturn]] void no_mpi() {
  fail("--dist mpi: this build has no MPI: install libopenmpi-dev and rebuild (scripts/setup.sh installs it; "
       "then meson setup --reconfigure build && ninja -C build)");
}

// The gather behind gather_rows; `begin` receives this rank's first row.
Tensor gather_impl(const Tensor& x, int64_t* begin) {
#ifndef QNN_HAVE_MPI
  (void)x, (void)begin;
  no_mpi();
#else
  QNN_CHECK(x.defined() && x.ndim() >= 1, "gather_rows: need a tensor with a batch dimension");
  const int64_t rows = x.dim(0);
  const int64_t row_numel = rows > 0 ? x.numel() / rows : shape_numel(Shape(x.shape().begin() + 1, x.shape().end()));
  std::vector<int64_t> counts(g_size);
  MPI_Allgather(&rows, 1, MPI_INT64_T, counts.data(), 1, MPI_INT64_T, MPI_COMM_WORLD);
  std::vector<int> cnt(g_size), off(g_size);
  int64_t total = 0, mine = 0;
  for (int q = 0; q < g_size; ++q) {
    if (q == g_rank) mine = total;
    cnt[q] = to_count(counts[q] * row_numel, "a row gather");
    off[q] = to_count(total * row_numel, "a row gather");
    total += counts[q];
  }
  to_count(total * row_numel, "a row gather");
  if (begin) *begin = mine;
  Shape s = x.shape();
  s[0] = total;
  Tensor out = Tensor::empty(s);
  MPI_Allgatherv(x.data(), cnt[g_rank], MPI_FLOAT, out.data(), cnt.data(), off.data(), MPI_FLOAT, MPI_COMM_WORLD);
  if (needs_grad(x)) {
    // gout [total, ...]: this rank's graph's gradient for EVERY rank's rows.
    // Rank q's rows get the sum over ranks p of p's gradient for them, added
    // in rank order p = 0, 1, ... (an all-to-all, then a fixed-order sum).
    record(out, "dist_gather_rows", {x}, [x, cnt, off, rank = g_rank, size = g_size](const Tensor& gout) {
      const int n = cnt[rank];
      std::vector<float> recv((size_t)n * size);
      std::vector<int> rcnt(size, n), roff(size);
      for (int p = 0; p < size; ++p) roff[p] = p * n;
      MPI_Alltoallv(gout.data(), cnt.data(), off.data(), MPI_FLOAT, recv.data(), rcnt.data(), roff.data(), MPI_FLOAT,
                    MPI_COMM_WORLD);
      float* gx = x.grad_data();
      for (int i = 0; i < n; ++i) {
        float s = recv[i];
        for (int p = 1; p < size; ++p) s += recv[(size_t)p * n + i];
        gx[i] += s;
      }
    });
  }
  return out;
#endif
}

// layers/batchnorm.h's hook: the op on the global batch, this rank's rows back.
Tensor whole_batch(const Tensor& x, const WholeBatchOp& op) {
  int64_t begin = 0;
  Tensor full = gather_impl(x, &begin);
  Tensor y = op(full);
  QNN_CHECK(y.ndim() >= 1 && y.dim(0) == full.dim(0), "--dist mpi: a whole-batch layer changed the batch size");
  return slice(y, 0, begin, begin + x.dim(0));
}
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

std::pair<int64_t, int64_t> my_rows(int64_t n) {
  const int64_t base = n / g_size, extra = n % g_size;
  const int64_t b = g_rank * base + std::min<int64_t>(g_rank, extra);
  return {b, b + base + (g_rank < extra ? 1 : 0)};
}

void check_batch(int64_t batch) {
  if (g_size <= 1 || batch % g_size == 0) return;
  const int64_t up = (batch / g_size + 1) * g_size;
  fail("--batch " + std::to_string(batch) + " is not a multiple of the " + std::to_string(g_size) +
       " MPI ranks: each rank takes an equal slice of every global batch (use e.g. --batch " + std::to_string(up) + ")");
}

Tensor gather_rows(const Tensor& x) {
  if (g_size == 1) return x;
  return gather_impl(x, nullptr);
}

Step::Step(int64_t global_rows, int64_t local_rows) : global_(global_rows), local_(local_rows) {
  QNN_CHECK(local_rows > 0, "--dist mpi: a batch of " + std::to_string(global_rows) + " rows gives rank " +
                                std::to_string(g_rank) + " no rows; use a --batch / data size with at least " +
                                std::to_string(g_size) + " rows in every batch");
  if (g_size > 1) {
    whole_batch_hook = &whole_batch;
    hooked_ = true;
  }
}

Step::~Step() {
  if (hooked_) whole_batch_hook = nullptr;
}

Tensor Step::scale_loss(const Tensor& loss) const {
  if (global_ == local_) return loss;
  // Two ranks: x 0.5, exact.
  return mul_scalar(loss, (float)((double)local_ / (double)global_));
}

void Step::reduce_gradients(const std::vector<Tensor>& params) {
#ifdef QNN_HAVE_MPI
  if (g_size == 1) return;
  if (hooked_) whole_batch_hook = nullptr, hooked_ = false;
  int64_t n = 0;
  for (const Tensor& p : params) n += p.numel();
  std::vector<float> buf((size_t)n);  // one flat bucket: one collective per step
  int64_t at = 0;
  for (const Tensor& p : params) {
    std::memcpy(buf.data() + at, p.grad_data(), sizeof(float) * p.numel());
    at += p.numel();
  }
  ordered_sum(buf.data(), n);
  at = 0;
  for (const Tensor& p : params) {
    std::memcpy(p.grad_data(), buf.data() + at, sizeof(float) * p.numel());
    at += p.numel();
  }
#else
  (void)params;
#endif
}

std::pair<double, int64_t> Step::reduce_stats(double loss_times_rows, int64_t correct) {
  double v[2] = {loss_times_rows, (double)correct};
#ifdef QNN_HAVE_MPI
  ordered_sum(v, 2);
#endif
  return {v[0], (int64_t)v[1]};
}

}  // namespace qnn::app::dist
