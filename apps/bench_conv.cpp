// apps/bench_conv.cpp — training speed of the float convolutions: Winograd
// F(2x2, 3x3) against im2col + sgemm, layer by layer, in one run.
//
// For each convolution of cifar_cnn's binarynet network (--width, --batch;
// 3x3, stride 1, pad 1) it times conv2d's forward and its backward (dx and
// dW; the first layer's input is the image, which wants no gradient, as in
// training), with kernels::set_winograd on and off. Each figure is the median
// of --reps timed runs after one warm-up. "gflops" counts the direct
// convolution's multiply-adds (2*N*O*C*9*OH*OW per product; the backward
// does two products, the first layer's one) whichever algorithm runs, so the
// two algorithms' figures compare as speeds; "peak" is that rate over the
// measured FMA peak of the --threads cores (kernels/fma_peak.h).
//
//   build/apps/bench_conv --threads 2 --json runs/bench_conv.json
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/common/bench_util.h"
#include "apps/common/cli_main.h"
#include "core/fileio.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/conv_f32.h"
#include "kernels/fma_peak.h"
#include "kernels/sgemm.h"
#include "kernels/winograd.h"

using json = nlohmann::json;
namespace k = qnn::kernels;

namespace {

double median_s(const std::function<void()>& fn, int reps) {
  fn();  // warm-up: the caching allocator's blocks, OpenBLAS's buffers
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const double t0 = qnn::app::now_s();
    fn();
    t.push_back(qnn::app::now_s() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Layer {
  int64_t C, O, H;
  bool image;  // the first layer: no input gradient
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "Training speed of the float 3x3 convolutions of cifar_cnn's binarynet network: Winograd F(2x2, 3x3) vs "
      "im2col + sgemm, forward and backward, layer by layer (conv2d with kernels::set_winograd on and off)."};
  double width = 0.5;
  int batch = 50, reps = 5, threads = 0;
  std::string json_path;
  cli.add_option("--width", width, "conv channel multiplier (0.5: 64-64-128-128-256-256)")
      ->check(CLI::Range(0.0625, 4.0))
      ->capture_default_str();
  cli.add_option("--batch", batch, "images per step")->check(CLI::Range(1, 4096))->capture_default_str();
  cli.add_option("--threads", threads, "OpenMP / BLAS threads (default: all cores)")->check(CLI::Range(1, 1024));
  cli.add_option("--reps", reps, "timed repetitions (median)")->check(CLI::Range(1, 100))->capture_default_str();
  cli.add_option("--json", json_path, "write the results as JSON");
  return qnn::app::parse_and_run(cli, argc, argv, "bench_conv", [&] {
    if (threads > 0) k::set_num_threads(threads);
    threads = k::num_threads();
    const k::WinogradMode mode_was = k::winograd_mode();

    // BinaryNet's CIFAR-10 convolutions: (2x128C3)-MP2-(2x256C3)-MP2-(2x512C3), times --width
    auto ch = [&](int base) { return std::max<int64_t>(1, (int64_t)(base * width + 0.5)); };
    const std::vector<Layer> layers = {{3, ch(128), 32, true},       {ch(128), ch(128), 32, false},
                                       {ch(128), ch(256), 16, false}, {ch(256), ch(256), 16, false},
                                       {ch(256), ch(512), 8, false},  {ch(512), ch(512), 8, false}};
    const k::Isa isa = k::isa_supported(k::Isa::avx512) ? k::Isa::avx512 : k::Isa::avx2;
    const bool have_peak = k::isa_supported(isa);
    const double peak = have_peak ? k::measure_fma_peak(isa, threads, 3).gflops : 0.0;
    std::printf("# bench_conv | batch %d | width %.3g | threads %d | %s\n", batch, width, threads, k::blas_info());
    if (have_peak) std::printf("# FMA peak of %d core(s) (%s): %.1f GFLOP/s\n", threads, k::isa_name(isa), peak);
    std::printf("%-22s %-10s %9s %9s %9s %9s %7s %6s\n", "layer", "algorithm", "fwd_ms", "bwd_ms", "fwd_gf/s",
                "bwd_gf/s", "peak", "x");

    qnn::Rng rng(1);
    json rows = json::array();
    double im2col_f = 0, im2col_b = 0, auto_f = 0, auto_b = 0;  // all layers; auto = what conv2d runs
    for (const Layer& l : layers) {
      qnn::Tensor x = qnn::Tensor::normal({batch, l.C, l.H, l.H}, 0.f, 1.f, rng);
      qnn::Tensor w = qnn::Tensor::normal({l.O, l.C, 3, 3}, 0.f, 0.1f, rng);
      if (!l.image) x.set_requires_grad();
      w.set_requires_grad();
      const qnn::Tensor gy = qnn::Tensor::normal({batch, l.O, l.H, l.H}, 0.f, 1.f, rng);
      const double flop = 2.0 * batch * l.O * l.C * 9 * l.H * l.H;
      const double bwd_flop = (l.image ? 1 : 2) * flop;
      const std::string name = "C" + std::to_string(l.C) + " O" + std::to_string(l.O) + " " + std::to_string(l.H) +
                               "x" + std::to_string(l.H);
      double base_total = 0, base_fwd = 0, base_bwd = 0;  // the im2col run of this layer
      k::set_winograd_mode(k::WinogradMode::auto_size);  // what conv2d runs by default at this batch
      const bool auto_picks = k::ConvPlan(batch, k::make_patch_geom(l.C, l.H, l.H, 3, 3, 1, 1), l.O).winograd;
      for (bool wino : {false, true}) {
        k::set_winograd(wino);
        const bool used = k::ConvPlan(batch, k::make_patch_geom(l.C, l.H, l.H, 3, 3, 1, 1), l.O).winograd;
        if (wino && !used) continue;  // C < kWinogradMinChannels: im2col + sgemm either way
        const double fwd = median_s([&] { qnn::conv2d(x, w, qnn::Tensor(), 1, 1); }, reps);
        const double both = median_s(
            [&] {
              x.zero_grad();
              w.zero_grad();
              qnn::conv2d(x, w, qnn::Tensor(), 1, 1).backward(gy);
            },
            reps);
        const double bwd = std::max(0.0, both - fwd);
        if (!wino) {
          im2col_f += fwd, im2col_b += bwd, base_total = both, base_fwd = fwd, base_bwd = bwd;
          auto_f += fwd, auto_b += bwd;  // replaced below when Winograd applies
        } else if (auto_picks) {
          auto_f += fwd - base_fwd, auto_b += bwd - base_bwd;
        }
        const double frac = have_peak ? (flop + bwd_flop) / both / 1e9 / peak : 0.0;
        std::printf("%-22s %-10s %9.2f %9.2f %9.1f %9.1f %6.0f%% %6.2f\n", name.c_str(),
                    wino ? "winograd" : "im2col", fwd * 1e3, bwd * 1e3, flop / fwd / 1e9, bwd_flop / bwd / 1e9,
                    100 * frac, base_total / both);
        rows.push_back({{"layer", name}, {"C", l.C}, {"O", l.O}, {"H", l.H}, {"algorithm", wino ? "winograd" : "im2col"},
                        {"forward_ms", fwd * 1e3}, {"backward_ms", bwd * 1e3}, {"forward_gflops", flop / fwd / 1e9},
                        {"backward_gflops", bwd_flop / bwd / 1e9}, {"fraction_of_peak", frac},
                        {"speedup_vs_im2col", base_total / both}});
      }
    }
    const double im2col_all = im2col_f + im2col_b, auto_all = auto_f + auto_b;
    std::printf("%-22s %-10s %9.2f %9.2f\n", "all convolutions", "im2col", im2col_f * 1e3, im2col_b * 1e3);
    std::printf("%-22s %-10s %9.2f %9.2f %37.2f\n", "all convolutions", "auto", auto_f * 1e3, auto_b * 1e3,
                im2col_all / auto_all);
    k::set_winograd_mode(mode_was);
    if (!json_path.empty()) {
      json j = {{"program", "bench_conv"}, {"batch", batch}, {"width", width}, {"threads", threads},
                {"blas", k::blas_info()}, {"reps", reps}, {"fma_peak_gflops", peak},
                {"fma_peak_isa", have_peak ? k::isa_name(isa) : "none"}, {"layers", rows},
                {"total_ms", {{"im2col", im2col_all * 1e3}, {"auto", auto_all * 1e3}}},
                {"speedup_vs_im2col", im2col_all / auto_all}};
      qnn::write_file_atomic(json_path, j.dump(2) + "\n");
      std::printf("# wrote %s\n", json_path.c_str());
    }
    return 0;
  });
}
