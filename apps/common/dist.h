// apps/common/dist.h — one optimizer step over slices of the global batch:
// gradient accumulation (--micro-batches M) and data-parallel training over
// MPI (--dist mpi), which are the same computation.
//
//   mpirun -np 2 build/apps/mnist_mlp --dist mpi --batch 100 ...
//   build/apps/mnist_mlp --batch 100 --micro-batches 2 ...   # the same model, bit for bit
//
// A global batch of n rows (--batch) is cut into K equal consecutive slices
// (split_rows). One process with --micro-batches K runs the slices one after
// the other; P MPI ranks each run one slice (rank r: slice r); P ranks with
// --micro-batches M run K = P*M slices, M per rank. A slice is a complete
// forward and backward pass on its rows alone:
//
//  * its mean loss is scaled by rows/n, so the slices' gradients add up to
//    the gradient of the global batch's mean loss;
//  * batch norm in training normalises with the SLICE's statistics (as
//    PyTorch's DistributedDataParallel without SyncBatchNorm): per-slice
//    batch statistics, no communication inside the forward pass. With 50
//    rows per slice (--batch 100, two slices) they are a little noisier
//    than the whole batch's; use a larger --batch to keep the rows per
//    slice. The running mean / variance of the step are the mean over the
//    slices of what each slice's update gave (summed in slice order in
//    double), the same in every process;
//  * every generator of the model (dropout masks, stochastic quantizers) is
//    set, before slice k, to a state derived from (its state at the start of
//    the step, k), and after the step to one derived from (that state, 0):
//    a draw is a function of the step and the slice, never of the rank or
//    of how many processes run the slices. Shuffling and augmentation belong
//    to the global batch (every rank loads the same global batch and keeps
//    its rows).
//
// The slices' gradients are each computed from zero and summed in slice
// order (slice 0 + slice 1 + ...). One process does that in a buffer; ranks
// do it with ONE collective per step over one flat bucket (gradients,
// per-slice buffers, per-slice loss / correct counts): two ranks use
// MPI_Allreduce, whose single addition per element is order-free; more
// ranks gather every bucket and add in rank order on each rank. So
// `mpirun -np P ... --dist mpi` and `... --micro-batches P` give the same
// checkpoint bytes (tested with P = 2); with --micro-batches M > 1 under
// MPI, each rank first sums its own M slices, so that run equals no
// one-process run exactly (it is the same mathematics, rounded in another
// order). Every rank then takes the same optimizer step: the replicas stay
// bit-identical.
//
// Ranks on one host (mpirun -np P on one machine) skip the network
// collective: every rank's bucket lives in one MPI shared-memory window,
// and the optimizer step is sharded (ZeRO stage 1): rank r sums, in rank
// order, only its 1/P of the gradient elements, straight into its
// parameters' gradients, and updates only those elements
// (Optimizer::set_shard) of parameters that themselves live in the window
// (one copy for all ranks, Tensor::rebind_storage, for the epoch): after a
// barrier every rank reads the others' updates in place. Each rank writes
// into its bucket only the gradient elements the other ranks own (its own
// shard's it adds from its own gradients). The same sums in
// the same order and the same elementwise update, so the same bits as the
// collective; each rank reads and writes 1/P of what an all-reduce plus a
// whole update would. (A user's optimizer that is not elementwise, or a
// constraint that is not a Clip, keeps whole updates: every rank sums
// everything.) At the end of the epoch the ranks complete each other's
// optimizer state, so a checkpoint of rank 0 holds all of it.
// QNN_DIST_SHM=0 turns this off (the collective path, e.g. to compare).
//
// Evaluation (validation / test) runs on every rank over the whole set: the
// numbers are the one-process numbers. Only rank 0 prints (the other ranks'
// stdout goes to /dev/null) and writes files (--json, --save, --export,
// --checkpoint, --plot).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "layers/module.h"
#include "optim/optimizer.h"

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

// Rows [begin, end) of part `part` of n rows cut into `parts` consecutive
// parts (the first n % parts parts get one row more).
std::pair<int64_t, int64_t> split_rows(int64_t n, int parts, int part);
// This rank's rows of a global batch of n rows: split_rows(n, size(), rank()).
std::pair<int64_t, int64_t> my_rows(int64_t n);

// Throws qnn::Error naming --batch (or --micro-batches) when --batch is not
// a multiple of ranks x micro-batches (the last, smaller batch of an epoch
// is split as evenly as it can be).
void check_batch(int64_t batch, int micro_batches = 1);

// One optimizer step as K = size() * micro slices, M = micro of them in this
// process (global slices rank()*M ... rank()*M + M - 1). Build once per
// epoch (it keeps its buffers); per step:
//
//   acc.start_step(n);                       // n: rows of the global batch
//   for (int m = 0; m < micro; ++m) {
//     auto [b, e] = acc.slice_rows(m);       // rows of the LOCAL batch (this rank's rows)
//     acc.begin_slice(m);                    // generators, buffers, zeroed gradients
//     loss = ...forward rows [b, e)...;
//     acc.scale_loss(loss).backward();
//     acc.end_slice(m, loss value, rows, correct);
//   }
//   StepTotals t = acc.finish();             // every parameter's .grad = the global gradient
//   opt.step();                              // (sharded: this rank's elements only)
//   acc.after_step();                        // sharded: the ranks exchange updated elements
// and after the epoch's last step
//   acc.end_epoch();                         // sharded: every rank's optimizer state complete
class SliceAccumulator {
 public:
  // opt (optional): the optimizer whose step follows finish(); shared only
  // to shard it (see above). It must outlive the accumulator.
  SliceAccumulator(Module& model, int micro, Optimizer* opt = nullptr);
  ~SliceAccumulator();
  SliceAccumulator(const SliceAccumulator&) = delete;
  SliceAccumulator& operator=(const SliceAccumulator&) = delete;
  void start_step(int64_t global_rows);
  // Rows [begin, end) of local slice m within this process's part of the batch.
  std::pair<int64_t, int64_t> slice_rows(int m) const;
  void begin_slice(int m);
  // The slice's mean loss times its rows / global rows (differentiable).
  Tensor scale_loss(const Tensor& slice_mean_loss, int m) const;
  void end_slice(int m, float slice_loss, int64_t correct);
  struct StepTotals {
    double loss = 0;  // the global batch's mean loss (NaN / Inf if any slice's was)
    int64_t correct = 0, rows = 0;
  };
  // Combines the slices (and ranks): gradients, buffers, generators.
  // Sharded, only this rank's elements of the gradients are the global sum.
  StepTotals finish();
  void after_step();
  void end_epoch();
  // The optimizer updates only this rank's elements (ranks on one host).
  bool sharded() const { return sharded_; }
  // One line for the log: how the ranks combine their slices.
  std::string describe() const;

 private:
  struct Shm;  // the shared-memory window (dist.cpp)
  void shm_sum(float* tail);
  void copy_shard(float* data, size_t i, bool to_staging, int owner);
  int micro_, slices_;
  Optimizer* opt_ = nullptr;
  std::unique_ptr<Shm> shm_;
  bool sharded_ = false;
  std::vector<int64_t> first_;  // first element of each parameter, laid end to end
  std::vector<int64_t> param_off_;  // sharded: each parameter's offset in the window's parameter area
  int64_t global_ = 0, local_begin_ = 0, local_rows_ = 0;
  std::vector<Tensor> params_, buffers_;
  std::vector<Rng*> rngs_;
  std::vector<Rng::State> rng_start_;
  int64_t grad_n_ = 0, buf_n_ = 0;
  // The bucket: [gradients (grad_n_) | has-gradient flags (params) |
  // K slots of (buffers (buf_n_), loss, rows, correct)].
  // Its storage: own_bucket_, or this rank's segment of the shared window.
  float* bucket_ = nullptr;
  int64_t bucket_n_ = 0;
  std::vector<float> own_bucket_, start_buffers_, gathered_, tail_sum_;
  int64_t slot_n() const { return buf_n_ + 3; }
  // Shard q of the gradient elements [0, grad_n_) (64-byte aligned cuts).
  std::pair<int64_t, int64_t> shard_of(int q) const;
  // Sharded on one host with one slice per rank: this rank's own shard of
  // the gradients stays in the parameters' gradients (not in its bucket).
  bool own_shard_local() const { return shm_ && sharded_ && micro_ == 1; }
};

}  // namespace qnn::app::dist
