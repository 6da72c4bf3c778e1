// apps/bench_kernels.cpp — speed of the binary / bit-serial GEMM kernels vs
// OpenBLAS sgemm on the same shapes.
//
// For each shape MxNxK: C[M x N] = A[M x K] * B[N x K]^T (B = a Linear
// layer's [out x in] weights). Every kernel is timed on data already in its
// own format (floats for sgemm, packed bits for XNOR, bit planes for
// bit-serial); packing time is reported separately ("pack A" = packing the
// activations once, as a layer does per forward pass). Each measurement is the
// median of --reps runs after one warm-up run. "gops" counts 2*M*N*K
// operations for every kernel (one multiply + one add per term), so numbers
// are comparable across kernels; "x sgemm" = sgemm median / kernel median.
//
// --conv NxCxHxW:OxKHxKW:stride:pad times a 2-D convolution forward pass
// (zero padding) on ±1 data: "f32" = float im2col (kernels/im2col.h) + sgemm
// per image, "xnor-<isa>" = kernels/packed_conv.h (packed im2col of words +
// XNOR GEMM + zero-padding correction, NCHW float sums) from an NHWC-packed
// input; packing that input from floats is timed separately ("pack"). Both
// outputs are exact integers, and the program checks they are equal.
// Backward rows (pass "backward-dW" / "backward-dx"): the weight and input
// gradient products alone, sgemm on float rows ("f32") vs the look-up
// products of the binary conv on packed bits ("pm1-<isa>").
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <omp.h>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <time.h>

#include "kernels/bitpack.h"
#include "kernels/bitserial.h"
#include "kernels/fma_peak.h"
#include "kernels/im2col.h"
#include "kernels/packed_conv.h"
#include "kernels/pm1_gemm.h"
#include "kernels/isa.h"
#include "kernels/sgemm.h"
#include "kernels/xnor_gemm.h"

namespace k = qnn::kernels;
using json = nlohmann::json;

namespace {

struct Shape {
  int64_t M, N, K;
};

std::vector<Shape> parse_shapes(const std::string& s) {
  std::vector<Shape> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    long long m, n, kk;
    char x1, x2;
    std::stringstream is(item);
    if (!(is >> m >> x1 >> n >> x2 >> kk) || (x1 != 'x' && x1 != 'X') || (x2 != 'x' && x2 != 'X') ||
        m < 0 || n < 0 || kk < 0 || !is.eof())
      throw std::invalid_argument("bad shape '" + item + "' (expected MxNxK, e.g. 100x4096x4096)");
    out.push_back({m, n, kk});
  }
  if (out.empty()) throw std::invalid_argument("no shapes given");
  return out;
}

struct ConvSpec {
  int64_t N, C, H, W, O, KH, KW, stride, pad;
  std::string text;
};

// "NxCxHxW:OxKHxKW:stride:pad[,...]"
std::vector<ConvSpec> parse_convs(const std::string& s) {
  std::vector<ConvSpec> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    long long v[9] = {};
    char sep[8] = {};
    std::stringstream is(item);
    const bool ok = bool(is >> v[0] >> sep[0] >> v[1] >> sep[1] >> v[2] >> sep[2] >> v[3] >> sep[3] >> v[4] >>
                         sep[4] >> v[5] >> sep[5] >> v[6] >> sep[6] >> v[7] >> sep[7] >> v[8]) &&
                    is.eof();
    const char want[8] = {'x', 'x', 'x', ':', 'x', 'x', ':', ':'};
    bool seps = ok;
    for (int i = 0; i < 8 && seps; ++i) seps = sep[i] == want[i] || (want[i] == 'x' && sep[i] == 'X');
    const ConvSpec c{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], item};
    if (!seps || c.N < 1 || c.C < 1 || c.H < 1 || c.W < 1 || c.O < 1 || c.KH < 1 || c.KW < 1 || c.stride < 1 ||
        c.pad < 0 || c.H + 2 * c.pad < c.KH || c.W + 2 * c.pad < c.KW)
      throw std::invalid_argument("--conv: bad convolution '" + item +
                                  "' (expected NxCxHxW:OxKHxKW:stride:pad with sizes >= 1, pad >= 0 and the "
                                  "kernel no larger than the padded image, e.g. 50x256x16x16:256x3x3:1:1)");
    out.push_back(c);
  }
  if (out.empty()) throw std::invalid_argument("--conv: no convolution given");
  return out;
}

double cpu_s() {  // CPU time of the whole process (all threads)
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  const size_t n = t.size();
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

struct Timing {
  double wall = 0;  // median wall-clock seconds
  double cpu = 0;   // median process CPU seconds (all threads)
};

// One warm-up run, then the median of `reps` timed runs.
Timing time_median(const std::function<void()>& fn, int reps) {
  fn();
  std::vector<double> t, c;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s(), c0 = cpu_s();
    fn();
    c.push_back(cpu_s() - c0);
    t.push_back(now_s() - t0);
  }
  return {median(t), median(c)};
}

void write_json_atomic(const std::string& path, const json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) throw std::runtime_error("cannot write " + tmp);
    f << j.dump(2) << "\n";
    if (!f) throw std::runtime_error("write failed: " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

// --conv: f32 (im2col + sgemm per image) vs the packed binary conv per ISA,
// forward, on ±1 data; appends {kernel, conv, pass, threads, seconds_median}.
void run_convs(const std::vector<ConvSpec>& convs, const std::vector<std::string>& wanted, int threads, int reps,
               json& records) {
  const k::Isa best = k::best_isa();
  std::printf("%-14s %-28s %11s %9s %10s %9s\n", "kernel", "conv", "median_ms", "x f32", "cpu_ms", "pack_ms");
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int> coin(0, 1);
  for (const ConvSpec& c : convs) {
    const k::PatchGeom g = k::make_patch_geom(c.C, c.H, c.W, c.KH, c.KW, c.stride, c.pad);
    const int64_t P = g.pixels(), CKK = g.taps();
    std::vector<float> x(size_t(c.N * c.C * c.H * c.W)), w(size_t(c.O * CKK));
    for (float& v : x) v = coin(rng) ? 1.0f : -1.0f;
    for (float& v : w) v = coin(rng) ? 1.0f : -1.0f;
    std::vector<float> ref(size_t(c.N * c.O * P)), out(ref.size());
    double f32_s = -1;
    auto report = [&](const std::string& name, Timing tm, double pack_s) {
      const double cpu = tm.cpu / threads;
      json r = {{"kernel", name}, {"conv", c.text}, {"pass", "forward"}, {"threads", threads},
                {"seconds_median", tm.wall}, {"cpu_seconds_per_thread_median", cpu}, {"padding", "zero"}};
      char sp[32] = "-", pk[32] = "-";
      if (f32_s > 0 && tm.wall > 0) {
        r["speedup_vs_f32"] = f32_s / tm.wall;
        std::snprintf(sp, sizeof sp, "%.1f", f32_s / tm.wall);
      }
      if (pack_s >= 0) {
        r["pack_seconds_median"] = pack_s;
        std::snprintf(pk, sizeof pk, "%.3f", pack_s * 1e3);
      }
      records.push_back(r);
      std::printf("%-14s %-28s %11.3f %9s %10.3f %9s\n", name.c_str(), c.text.c_str(), tm.wall * 1e3, sp,
                  cpu * 1e3, pk);
      std::fflush(stdout);
    };
    const bool want_f32 = std::find(wanted.begin(), wanted.end(), "f32") != wanted.end();
    // The float reference is always computed once (the packed results are checked against it).
    std::vector<float> cols(size_t(CKK * P));
    auto f32_conv = [&] {
      for (int64_t n = 0; n < c.N; ++n) {
        k::im2col_cols(x.data() + n * c.C * c.H * c.W, g, 0.0f, cols.data());
        k::sgemm(false, false, c.O, P, CKK, 1.0f, w.data(), CKK, cols.data(), P, 0.0f,
                 ref.data() + n * c.O * P, P);
      }
    };
    if (want_f32) {
      const Timing tm = time_median(f32_conv, reps);
      f32_s = tm.wall;
      report("f32", tm, -1);
    } else {
      f32_conv();
    }
    std::vector<uint64_t> xp(size_t(c.N * c.H * c.W * k::pixel_words(c.C)));
    const k::PackedConvWeights pw = k::pack_conv_weights(w.data(), c.O, c.C, c.KH, c.KW);
    for (const std::string& name : wanted) {
      if (name.rfind("xnor-", 0) != 0) continue;
      const k::Isa isa = k::parse_isa(name.substr(5));
      if (!k::isa_supported(isa)) {
        std::printf("%-14s skipped: CPU lacks %s\n", name.c_str(), k::isa_name(isa));
        continue;
      }
      k::set_isa(isa);
      auto pack = [&] { k::pack_nhwc(x.data(), c.N, c.C, c.H, c.W, xp.data()); };
      pack();
      auto run = [&] { k::packed_conv_forward(xp.data(), c.N, g, pw, k::ConvPad::zero, out.data()); };
      run();
      if (out != ref)
        throw std::runtime_error("--conv " + c.text + ": " + name + " sums differ from the f32 conv");
      const Timing tm = time_median(run, reps);
      report(name, tm, time_median(pack, reps).wall);
      k::set_isa(best);
    }
    // Backward, the two products of a training step at this shape (no
    // im2col / col2im, no surrogate): "f32" = sgemm on float im2col rows,
    // "pm1-<isa>" = binary_conv2d's look-up products on packed bits:
    //   dW: [O x M] x [M x CKK]   (pm1_gemm_zeros over the packed patches, zero padding)
    //   dx: [M x O] x [O x CKK]   (pm1_gemm against sign(W))
    const int64_t M = c.N * P, CW = k::pixel_words(c.C), KK = c.KH * c.KW, Kp = KK * CW * 64;
    std::vector<float> gT(size_t(c.O * M)), grows(size_t(M * c.O)), rows(size_t(M * CKK));
    for (float& v : gT) v = std::uniform_real_distribution<float>(-1, 1)(rng);
    for (int64_t o = 0; o < c.O; ++o)
      for (int64_t m = 0; m < M; ++m) grows[size_t(m * c.O + o)] = gT[size_t(o * M + m)];
    k::im2col_rows_batch(x.data(), c.N, g, 0.0f, rows.data());
    std::vector<float> dW(size_t(c.O * std::max(CKK, Kp))), dx(size_t(M * CKK));
    auto report_bwd = [&](const std::string& name, const std::string& pass, Timing tm, double base) {
      json r = {{"kernel", name}, {"conv", c.text}, {"pass", pass}, {"threads", threads},
                {"seconds_median", tm.wall}, {"cpu_seconds_per_thread_median", tm.cpu / threads}, {"padding", "zero"}};
      char sp[32] = "-";
      if (base > 0 && tm.wall > 0) {
        r["speedup_vs_f32"] = base / tm.wall;
        std::snprintf(sp, sizeof sp, "%.1f", base / tm.wall);
      }
      records.push_back(r);
      std::printf("%-14s %-28s %11.3f %9s %10.3f %9s  %s\n", name.c_str(), c.text.c_str(), tm.wall * 1e3, sp,
                  tm.cpu / threads * 1e3, "-", pass.c_str());
      std::fflush(stdout);
    };
    double f32_dw = -1, f32_dx = -1;
    if (want_f32) {
      const Timing tw = time_median([&] {
        k::sgemm(false, false, c.O, CKK, M, 1.0f, gT.data(), M, rows.data(), CKK, 0.0f, dW.data(), CKK);
      }, reps);
      f32_dw = tw.wall;
      report_bwd("f32", "backward-dW", tw, -1);
      const Timing tx = time_median([&] {
        k::sgemm(false, false, M, CKK, c.O, 1.0f, grows.data(), c.O, w.data(), CKK, 0.0f, dx.data(), CKK);
      }, reps);
      f32_dx = tx.wall;
      report_bwd("f32", "backward-dx", tx, -1);
    }
    std::vector<uint64_t> patches(size_t(M * k::patch_words(c.C, c.KH, c.KW)));
    k::pack_nhwc(x.data(), c.N, c.C, c.H, c.W, xp.data());
    k::packed_im2col(xp.data(), c.N, g, patches.data());
    const int64_t ZW = (KK + 63) / 64;
    std::vector<uint64_t> zeros(size_t(M * ZW), 0);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t t = 0; t < KK; ++t) {
        const int64_t p = m % P, iy = p / g.OW * c.stride - c.pad + t / c.KW, ix = p % g.OW * c.stride - c.pad + t % c.KW;
        if (iy < 0 || iy >= c.H || ix < 0 || ix >= c.W) zeros[size_t(m * ZW + t / 64)] |= uint64_t(1) << (t % 64);
      }
    std::vector<uint64_t> wsign(size_t(c.O * k::packed_words(CKK)));
    k::pack_rows(w.data(), c.O, CKK, CKK, wsign.data());
    for (const std::string& name : wanted) {
      if (name.rfind("pm1-", 0) != 0) continue;
      const k::Isa isa = k::parse_isa(name.substr(4));
      if (!k::isa_supported(isa)) continue;
      k::set_isa(isa);
      report_bwd(name, "backward-dW", time_median([&] {
        k::pm1_gemm_zeros(c.O, M, Kp, gT.data(), M, 1, patches.data(), CW * 64, zeros.data(), dW.data(), Kp, false);
      }, reps), f32_dw);
      report_bwd(name, "backward-dx", time_median([&] {
        k::pm1_gemm(M, c.O, CKK, grows.data(), c.O, 1, wsign.data(), dx.data(), CKK, false);
      }, reps), f32_dx);
      k::set_isa(best);
    }
  }
}

}  // namespace

// --fma-peak: every thread runs the FMA probe at once; flops of all threads
// over the wall time of the slowest. Each timed run lasts 0.2-0.4 s.
void run_fma_peak(int threads, int reps, json& records) {
  std::printf("\n%-16s %8s %11s %10s %14s\n", "probe", "threads", "median_ms", "gflops", "gflops/thread");
  for (const k::Isa isa : {k::Isa::avx512, k::Isa::avx2}) {
    if (!k::isa_supported(isa)) continue;
    const k::FmaPeak p = k::measure_fma_peak(isa, threads, reps);
    const std::string name = std::string("fma-peak-") + k::isa_name(isa);
    std::printf("%-16s %8d %11.2f %10.1f %14.1f\n", name.c_str(), threads, p.median_s * 1e3, p.gflops,
                p.gflops / threads);
    records.push_back({{"kernel", name}, {"threads", threads}, {"median_ms", p.median_s * 1e3}, {"gflops", p.gflops},
                       {"gflops_per_thread", p.gflops / threads}, {"fmas_per_lane_per_iter", k::kFmaChains},
                       {"iters", p.iters}});
  }
}

int main(int argc, char** argv) {
  qnn::kernels::select_blas_core(argv);  // may restart the program once (see kernels/sgemm.h)
  CLI::App cli{
      "Benchmark qnn's bit kernels against OpenBLAS sgemm.\n"
      "Measures C[M x N] = A[M x K] * B[N x K]^T per shape and kernel:\n"
      "  sgemm          kernels::sgemm (OpenBLAS) on float data (trans_b)\n"
      "  xnor-<isa>     xnor_gemm_i32 on pre-packed ±1 data, SIMD variant forced\n"
      "                 (scalar, avx2, avx512; unsupported ones are skipped)\n"
      "  bitserial-AxB  bitserial_gemm_i32, A-bit activations x B-bit weights,\n"
      "                 best SIMD variant\n"
      "  pm1-<isa>      pm1_gemm: real A x sign(B)^T by table look-up (the backward\n"
      "                 products of binary layers; its table and nibble set-up is\n"
      "                 inside the timed call, as in training). Training shapes:\n"
      "                 dx = 100x784x2048 / 100x2048x2048, dW = 2048x2048x100\n"
      "Time = median of --reps runs after a warm-up; packing is excluded from the\n"
      "kernel time and shown separately (pack A = activations, per forward pass).\n"
      "gops = 2*M*N*K / seconds / 1e9 for every kernel (so 1000 gops = 1 T ops/s);\n"
      "speed-up = sgemm seconds / kernel seconds at the same shape and threads.\n"
      "cpu_ms = median process CPU time / threads: on a busy machine wall > cpu\n"
      "shows time lost to other processes (with T > 1 it includes OpenMP spinning)."};
  std::string shapes_arg = "1x4096x4096,100x2048x784,100x4096x4096,1000x4096x4096,4096x4096x4096";
  int threads = 1, reps = 5;
  std::string kernels_arg, json_path, conv_arg;
  CLI::Option* shapes_opt =
      cli.add_option("--shapes", shapes_arg, "comma-separated MxNxK list")->capture_default_str();
  CLI::Option* conv_opt = cli.add_option("--conv", conv_arg,
                 "comma-separated NxCxHxW:OxKHxKW:stride:pad list: time a binary conv forward "
                 "(zero padding) as f32 (im2col + sgemm) vs xnor-<isa> (kernels/packed_conv.h); "
                 "with --conv, GEMM shapes run only if --shapes is given too");
  cli.add_option("--threads", threads, "threads for every kernel (OpenMP + OpenBLAS)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cli.add_option("--reps", reps, "timed runs per measurement (median reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cli.add_option("--kernels", kernels_arg,
                 "comma-separated subset of: sgemm,xnor-scalar,xnor-avx2,xnor-avx512,"
                 "bitserial-2x2,bitserial-4x4,pm1-scalar,pm1-avx2,pm1-avx512, and f32 for --conv "
                 "(default: all the CPU supports)");
  cli.add_option("--json", json_path, "write the records as JSON to FILE (atomically)");
  bool fma_peak = false;
  cli.add_flag("--fma-peak", fma_peak,
               "measure the float FMA peak of --threads cores (kernels/fma_peak.h: independent FMA chains, "
               "AVX-512 and AVX2): the denominator of 'fraction of peak' figures; GEMM shapes then run only "
               "if --shapes is given too");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }

  try {
    const std::vector<ConvSpec> convs = conv_opt->count() > 0 ? parse_convs(conv_arg) : std::vector<ConvSpec>{};
    const std::vector<Shape> shapes = (convs.empty() && !fma_peak) || shapes_opt->count() > 0
                                          ? parse_shapes(shapes_arg)
                                          : std::vector<Shape>{};
    const std::vector<std::string> all = {"sgemm",         "xnor-scalar",   "xnor-avx2",  "xnor-avx512",
                                          "bitserial-2x2", "bitserial-4x4", "pm1-scalar", "pm1-avx2",
                                          "pm1-avx512",    "f32"};
    std::vector<std::string> wanted;
    if (kernels_arg.empty()) {
      wanted = all;
    } else {
      std::stringstream ss(kernels_arg);
      std::string it;
      while (std::getline(ss, it, ','))
        if (!it.empty()) {
          if (std::find(all.begin(), all.end(), it) == all.end())
            throw std::invalid_argument("unknown kernel '" + it + "'");
          wanted.push_back(it);
        }
    }
    if (reps < 5) std::fprintf(stderr, "note: --reps %d < 5, medians are noisy\n", reps);
    k::set_num_threads(threads);
    const k::Isa best = k::best_isa();
    std::printf("qnn bench_kernels | threads=%d reps=%d | best isa=%s | %s\n", threads, reps,
                k::isa_name(best), k::blas_info());
    if (!shapes.empty())
      std::printf("%-16s %6s %6s %6s %11s %10s %9s %9s %10s\n", "kernel", "M", "N", "K", "median_ms",
                  "gops", "x sgemm", "cpu_ms", "packA_ms");

    json records = json::array();
    std::mt19937 rng(12345);
    std::uniform_real_distribution<float> U(-1.0f, 1.0f);
    for (const Shape& s : shapes) {
      const int64_t M = s.M, N = s.N, K = s.K;
      std::vector<float> A(size_t(M * K)), B(size_t(N * K)), C(size_t(M * N));
      for (float& v : A) v = U(rng);
      for (float& v : B) v = U(rng);
      k::PackedVector Ap = k::make_packed(M, K), Bp = k::make_packed(N, K);
      k::pack_rows(A.data(), M, K, K, Ap.data());
      k::pack_rows(B.data(), N, K, K, Bp.data());
      std::vector<int32_t> Ci(size_t(M * N));
      const double ops = 2.0 * double(M) * double(N) * double(K);
      double sgemm_s = -1;

      auto report = [&](const std::string& name, Timing tm, double pack_s) {
        const double sec = tm.wall, cpu = tm.cpu / threads;
        const double gops = sec > 0 ? ops / sec / 1e9 : 0.0;
        json r = {{"kernel", name}, {"M", M}, {"N", N}, {"K", K}, {"threads", threads},
                  {"seconds_median", sec}, {"gops", gops}, {"cpu_seconds_per_thread_median", cpu}};
        if (sgemm_s > 0 && sec > 0) r["speedup_vs_sgemm"] = sgemm_s / sec;
        if (pack_s >= 0) r["pack_a_seconds_median"] = pack_s;
        records.push_back(r);
        char sp[32] = "-", pk[32] = "-";
        if (sgemm_s > 0 && sec > 0) std::snprintf(sp, sizeof sp, "%.1f", sgemm_s / sec);
        if (pack_s >= 0) std::snprintf(pk, sizeof pk, "%.3f", pack_s * 1e3);
        std::printf("%-16s %6lld %6lld %6lld %11.3f %10.1f %9s %9.3f %10s\n", name.c_str(),
                    (long long)M, (long long)N, (long long)K, sec * 1e3, gops, sp, cpu * 1e3, pk);
        std::fflush(stdout);
      };

      for (const std::string& name : wanted) {
        if (name == "f32") continue;  // a --conv kernel
        if (name == "sgemm") {
          const Timing tm = time_median(
              [&] {
                k::sgemm(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N);
              },
              reps);
          sgemm_s = tm.wall;
          report(name, tm, -1);
        } else if (name.rfind("xnor-", 0) == 0) {
          const k::Isa isa = k::parse_isa(name.substr(5));
          if (!k::isa_supported(isa)) {
            std::printf("%-16s skipped: CPU lacks %s\n", name.c_str(), k::isa_name(isa));
            continue;
          }
          k::set_isa(isa);
          auto run = [&] { k::xnor_gemm_i32(Ap.data(), Bp.data(), M, N, K, Ci.data(), N); };
          if (isa == k::Isa::scalar) {  // probe: skip if the whole measurement would take > ~30 s
            const int64_t pm = std::min<int64_t>(M, 8);
            const double t0 = now_s();
            k::xnor_gemm_i32(Ap.data(), Bp.data(), pm, N, K, Ci.data(), N);
            const double est = (now_s() - t0) * double(M) / double(std::max<int64_t>(pm, 1)) * (reps + 1);
            if (est > 30.0) {
              std::printf("%-16s skipped: estimated %.0f s for %d+1 runs (> 30 s)\n", name.c_str(),
                          est, reps);
              k::set_isa(best);
              continue;
            }
          }
          const Timing tm = time_median(run, reps);
          const double pack_s =
              time_median([&] { k::pack_rows(A.data(), M, K, K, Ap.data()); }, reps).wall;
          report(name, tm, pack_s);
          k::set_isa(best);
        } else if (name.rfind("pm1-", 0) == 0) {
          // C [M x N] = A [M x K] . S [K x N] with S = sign(B)^T: K packed rows of N.
          const k::Isa isa = k::parse_isa(name.substr(4));
          if (!k::isa_supported(isa)) {
            std::printf("%-16s skipped: CPU lacks %s\n", name.c_str(), k::isa_name(isa));
            continue;
          }
          k::set_isa(isa);
          std::vector<float> Bt(size_t(K * N));
          for (int64_t n = 0; n < N; ++n)
            for (int64_t kk = 0; kk < K; ++kk) Bt[kk * N + n] = B[n * K + kk];
          k::PackedVector Sp = k::make_packed(K, N);
          k::pack_rows(Bt.data(), K, N, N, Sp.data());
          auto run = [&] { k::pm1_gemm(M, K, N, A.data(), K, 1, Sp.data(), C.data(), N, false); };
          if (isa == k::Isa::scalar) {  // probe as for xnor-scalar
            const int64_t pm = std::min<int64_t>(M, 8);
            const double t0 = now_s();
            k::pm1_gemm(pm, K, N, A.data(), K, 1, Sp.data(), C.data(), N, false);
            const double est = (now_s() - t0) * double(M) / double(std::max<int64_t>(pm, 1)) * (reps + 1);
            if (est > 30.0) {
              std::printf("%-16s skipped: estimated %.0f s for %d+1 runs (> 30 s)\n", name.c_str(), est, reps);
              k::set_isa(best);
              continue;
            }
          }
          report(name, time_median(run, reps), -1);
          k::set_isa(best);
        } else {  // bitserial-AxB
          const int ab = name[10] - '0', bb = name[12] - '0';
          k::PackedVector Aq(size_t(k::plane_packed_words(M, K, ab)));
          k::PackedVector Bq(size_t(k::plane_packed_words(N, K, bb)));
          k::quantize_pack_planes(B.data(), N, K, K, bb, 1.0f, Bq.data());
          auto packA = [&] { k::quantize_pack_planes(A.data(), M, K, K, ab, 1.0f, Aq.data()); };
          packA();
          const Timing tm = time_median(
              [&] { k::bitserial_gemm_i32(Aq.data(), ab, Bq.data(), bb, M, N, K, Ci.data(), N); },
              reps);
          report(name, tm, time_median(packA, reps).wall);
        }
      }
    }
    if (!convs.empty()) run_convs(convs, wanted, threads, reps, records);
    if (fma_peak) run_fma_peak(threads, reps, records);
    if (!json_path.empty()) {
      json j = {{"benchmark", "bench_kernels"},
                {"threads", threads},
                {"reps", reps},
                {"best_isa", k::isa_name(best)},
                {"blas", k::blas_info()},
                {"ops_counted", "2*M*N*K"},
                {"records", records}};
      write_json_atomic(json_path, j);
      std::printf("wrote %s\n", json_path.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
