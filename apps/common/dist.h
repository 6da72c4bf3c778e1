// apps/common/dist.h — data-parallel training over MPI (--dist mpi).
//
//   mpirun -np 2 build/apps/mnist_mlp --dist mpi --batch 100 ...
//
// Every process (rank) holds the whole model and sees the same sequence of
// global batches (--batch rows each, same seed, same order). In a training
// step rank r keeps only its slice of the batch, rows [r*B/P, (r+1)*B/P), and
// the step computes the gradient of the GLOBAL batch's loss:
//
//  * the loss of a slice is its mean scaled by rows/B, so the slices' losses
//    add up to the global mean and their gradients to the global gradient;
//  * layers whose output row depends on other rows or on the row's place in
//    the batch — batch norm in training (batch statistics) and dropout (masks
//    drawn per element index) — run on the whole global batch: the slices are
//    gathered in rank order (layers/batchnorm.h's whole_batch hook), the layer
//    runs on the gathered rows exactly as in one process, and each rank keeps
//    its own rows. The gather's backward sums the ranks' gradients for each
//    row in rank order. So batch-norm statistics and running averages are
//    those of the global batch (synchronised batch norm), and dropout masks
//    are the one-process masks;
//  * after backward, the parameter gradients (one flat buffer) are summed
//    over the ranks in a fixed order (two ranks: MPI_Allreduce, whose single
//    addition per element is order-free; more: gathered to rank 0, summed in
//    rank order, broadcast), so runs are reproducible bit for bit.
//
// Every rank then takes the same optimizer step, so the replicas stay equal.
// What is NOT bit-identical to one process: a weight gradient summed over the
// batch is summed per slice and then across ranks, which rounds differently
// from one GEMM over the whole batch (float addition is not associative). The
// final model agrees with the one-process run to ~1e-6 relative (tested).
//
// Evaluation (validation / test) runs on every rank over the whole set: the
// numbers are the one-process numbers. Only rank 0 prints (the other ranks'
// stdout goes to /dev/null) and writes files (--json, --save, --export).
//
// Not handled: stochastic quantizers (--binarize stoch) draw per slice
// position, so their noise is not the one-process noise.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qnn::app::dist {

// --dist none|mpi. "mpi": MPI_Init (and MPI_Finalize at exit, or MPI_Abort
// when the program exits before the run finished, so no rank waits forever),
// stdout of ranks > 0 to /dev/null. Throws qnn::Error when the build has no
// MPI. Call once, before any training; a no-op for "none".
void init(const std::string& mode);

bool active();      // --dist mpi was given (even with one rank)
int rank();         // 0 without --dist
int size();         // 1 without --dist
bool is_root();     // rank() == 0: prints and writes files
int local_size();   // ranks on this host (for the default --threads)
bool have_mpi();    // this build was compiled with MPI

// The run finished: at exit MPI_Finalize, not MPI_Abort.
void mark_done();

// This rank's rows [begin, end) of a global batch of n rows (even split; the
// first ranks get one row more when P does not divide n).
std::pair<int64_t, int64_t> my_rows(int64_t n);

// Throws qnn::Error naming --batch when it is not a multiple of the rank
// count (the last, smaller batch of an epoch is split as evenly as it can be).
void check_batch(int64_t batch);

// One training step's distributed parts, RAII: while alive, layers that need
// the whole batch run on the gathered batch (layers/batchnorm.h's hook).
class Step {
 public:
  // global_rows: rows of the global batch; local_rows: this rank's slice.
  Step(int64_t global_rows, int64_t local_rows);
  ~Step();
  Step(const Step&) = delete;
  Step& operator=(const Step&) = delete;
  // The slice's mean loss times local/global rows (a differentiable scalar).
  Tensor scale_loss(const Tensor& local_mean_loss) const;
  // Call after the backward, outside the hook: sums every parameter's
  // gradient over the ranks (fixed order).
  void reduce_gradients(const std::vector<Tensor>& params);
  // Sums of per-step numbers over the ranks (fixed order): {loss*rows, correct}.
  std::pair<double, int64_t> reduce_stats(double loss_times_rows, int64_t correct);

 private:
  int64_t global_, local_;
  bool hooked_ = false;
};

// Rows of `x` (dim 0) of every rank, concatenated in rank order (same shape
// beyond dim 0 on every rank). Differentiable: the backward gives each rank
// the sum over ranks (in rank order) of the gradients of its own rows.
Tensor gather_rows(const Tensor& x);

}  // namespace qnn::app::dist
