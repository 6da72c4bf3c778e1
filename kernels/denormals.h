// kernels/denormals.h — flushing subnormal floats to zero (FTZ + DAZ).
//
// Why. A float below 2^-126 in magnitude is "subnormal" (IEEE gradual
// underflow). Many x86 cores run an operation with a subnormal operand or
// result through a microcode assist of ~100 cycles instead of one. Training
// produces such values: a recurrent network's gradient is multiplied by a
// forget gate below 1 at each of 300 steps back in time, and decays into the
// subnormal range. Measured on an Intel Xeon (family 6, model 167), one
// thread: the 1-bit LSTM on IMDB trained at 48 sequences/s with gradual
// underflow and at 381 with flushing, and the same loss to the printed digits
// (`imdb_lstm --model qnn --limit-train 1000 --val 100 --epochs 1 --threads 1`;
// docs/results-log.md, session 17). AMD Zen cores take the penalty far less
// often, so the two machines differed 25x there.
//
// Flushing sets two bits of the SSE control register MXCSR: FTZ (a subnormal
// result becomes +-0) and DAZ (a subnormal input is read as +-0). Values that
// small carry no information a training run needs; TensorFlow flushes in its
// CPU threads for the same reason, PyTorch offers torch.set_flush_denormal.
//
// Who sets it. Every qnn app flushes at start (apps/common/cli_main.h), on
// the main thread and every OpenMP worker; threads created later copy the
// creating thread's MXCSR. QNN_DENORMALS=keep in the environment keeps IEEE
// gradual underflow (the numbers can then differ in the last bits wherever a
// value underflows, and recurrent training is slower on such CPUs). The
// library itself never changes the floating-point environment behind a
// program's back: a program built on it calls set_flush_denormals itself.
// The choice is made before any kernel runs, so the kernel switch and the
// thread count still never change a number.
//
// x86 only; elsewhere flushing is reported as unsupported and nothing changes.
#pragma once

namespace qnn::kernels {

// Flush (true) or keep (false) subnormals, on the calling thread and on every
// thread of the OpenMP pool. Returns false if this CPU has no such mode (not
// x86): nothing changed.
bool set_flush_denormals(bool on);
// Whether the calling thread flushes now.
bool flush_denormals();
// Applies QNN_DENORMALS: "keep" keeps IEEE subnormals, "flush" or unset
// flushes. Throws std::invalid_argument naming the variable for any other
// value. Returns flush_denormals() afterwards.
bool apply_denormals_env();
// For run headers: "flushed", "kept (IEEE)" or "IEEE (no flush mode)".
const char* denormals_name();

}  // namespace qnn::kernels
