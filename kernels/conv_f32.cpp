// kernels/conv_f32.cpp — the float convolution's forward (see conv_f32.h).
#include "kernels/conv_f32.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/sgemm.h"

namespace qnn::kernels {

ConvPlan::ConvPlan(int64_t N, const PatchGeom& g, int64_t O) {
  const int64_t P = g.pixels(), K = g.taps();
  const int T = omp_in_parallel() ? 1 : num_threads();
  parallel = T > 1 && N >= T;
  threads = parallel ? T : 1;
  const int64_t per_thread = (N + threads - 1) / threads;
  winograd = winograd_applies(g);
  if (winograd && winograd_mode() == WinogradMode::auto_size) {
    // auto (kernels/winograd.h): each thread's products at least
    // kWinogradMinCols tiles wide, and no threaded sgemm on small products.
    const bool threaded_sgemm = T > 1 && !parallel;
    winograd = !threaded_sgemm && per_thread * winograd_tiles(g).per_image() >= kWinogradMinCols;
  }
  if (winograd) {
    tiles = winograd_tiles(g);
    const int64_t tpi = tiles.per_image();
    G = std::max<int64_t>(1, std::min(per_thread, (kMinGemmCols + tpi - 1) / tpi));
    shared = 16 * O * g.C;
    slot = tiles.plane_size(G) + 16 * (g.C + O) * G * tpi + 16 * O * g.C;
    return;
  }
  G = std::max<int64_t>(1, std::min(per_thread, (kMinGemmCols + P - 1) / P));
  slot = K * G * P + (G > 1 ? O * G * P : 0);
}

namespace {
// U [16, O, C] of w [O, C, 3, 3], spread over the threads (it is O*C small transforms).
void weights_to_u(const float* w, int64_t O, int64_t C, float* U, bool parallel) {
  const int64_t chunk = 64;
  const int64_t n = (O + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (parallel: parallel && O * C >= 4096)
  for (int64_t b = 0; b < n; ++b) {
    const int64_t o0 = b * chunk, oc = std::min(chunk, O - o0);
    // rows o0.. of every xi block: transform into a small buffer, then place
    std::vector<float> part(size_t(16 * oc * C));
    winograd_weights(w + o0 * C * 9, oc, C, part.data());
    for (int xi = 0; xi < 16; ++xi)
      std::copy(part.begin() + xi * oc * C, part.begin() + (xi + 1) * oc * C, U + xi * O * C + o0 * C);
  }
}

struct WinoSlot {
  float* plane;
  float* V;   // [16, C, L]
  float* M;   // [16, O, L]
  float* dU;  // [16, O, C]
};
WinoSlot wino_slot(const ConvPlan& plan, const PatchGeom& g, int64_t O, float* scratch, int tid) {
  float* s = plan.cols_of(scratch, tid);
  const int64_t L = plan.wino_cols();
  WinoSlot w;
  w.plane = s;
  w.V = w.plane + plan.tiles.plane_size(plan.G);
  w.M = w.V + 16 * g.C * L;
  w.dU = w.M + 16 * O * L;
  return w;
}

void winograd_forward(const float* px, int64_t N, const PatchGeom& g, int64_t O, const float* pw, const float* pb,
                      float* py, const ConvPlan& plan, float* scratch) {
  const int64_t C = g.C, img = g.image_size(), L = plan.wino_cols(), tpi = plan.tiles.per_image();
  float* U = scratch;
  weights_to_u(pw, O, C, U, plan.parallel || num_threads() > 1);
#pragma omp parallel num_threads(plan.threads) if (parallel: plan.parallel)
  {
    const int tid = omp_get_thread_num(), T = plan.threads;
    const WinoSlot s = wino_slot(plan, g, O, scratch, tid);
    for (int64_t n0 = N * tid / T, n_end = N * (tid + 1) / T; n0 < n_end; n0 += plan.G) {
      const int64_t gc = std::min(plan.G, n_end - n0), cols = gc * tpi;
      winograd_input(px + n0 * img, gc, g, plan.tiles, s.plane, s.V, L);
      // M[xi] [O, cols] = U[xi] [O, C] . V[xi] [C, cols]
      for (int xi = 0; xi < 16; ++xi)
        sgemm(false, false, O, cols, C, 1.f, U + xi * O * C, C, s.V + xi * C * L, L, 0.f, s.M + xi * O * L, L);
      winograd_output(s.M, L, gc, O, g, plan.tiles, pb, py + n0 * O * g.pixels());
    }
  }
}
}  // namespace

void conv2d_f32_backward_winograd(const float* px, const float* gy, int64_t N, const PatchGeom& g, int64_t O,
                                  const float* pw, float* gx, float* gw, const ConvPlan& plan, float* scratch) {
  const int64_t C = g.C, img = g.image_size(), L = plan.wino_cols(), tpi = plan.tiles.per_image(), P = g.pixels();
  float* U = scratch;
  if (gx) weights_to_u(pw, O, C, U, plan.parallel || num_threads() > 1);
#pragma omp parallel num_threads(plan.threads) if (parallel: plan.parallel)
  {
    const int tid = omp_get_thread_num(), T = plan.threads;
    const WinoSlot s = wino_slot(plan, g, O, scratch, tid);
    if (gw) std::fill(s.dU, s.dU + 16 * O * C, 0.f);
    for (int64_t n0 = N * tid / T, n_end = N * (tid + 1) / T; n0 < n_end; n0 += plan.G) {
      const int64_t gc = std::min(plan.G, n_end - n0), cols = gc * tpi;
      winograd_output_adjoint(gy + n0 * O * P, gc, O, g, plan.tiles, s.M, L);  // dM [16, O, cols]
      if (gw) {
        // dU[xi] [O, C] += dM[xi] [O, cols] . V[xi]^T [cols, C]
        winograd_input(px + n0 * img, gc, g, plan.tiles, s.plane, s.V, L);
        for (int xi = 0; xi < 16; ++xi)
          sgemm(false, true, O, C, cols, 1.f, s.M + xi * O * L, L, s.V + xi * C * L, L, 1.f, s.dU + xi * O * C, C);
      }
      if (gx) {
        // dV[xi] [C, cols] = U[xi]^T [C, O] . dM[xi] [O, cols]  (into V: done with it)
        for (int xi = 0; xi < 16; ++xi)
          sgemm(true, false, C, cols, O, 1.f, U + xi * O * C, C, s.M + xi * O * L, L, 0.f, s.V + xi * C * L, L);
        winograd_input_adjoint_add(s.V, L, gc, g, plan.tiles, s.plane, gx + n0 * img);
      }
    }
  }
  if (gw) {
    // the threads' dU in a fixed order, then dw += G^T dU G
    const int T = plan.threads;
    float* dU0 = wino_slot(plan, g, O, scratch, 0).dU;
    if (T > 1) {
      const int64_t n = 16 * O * C;
#pragma omp parallel for schedule(static) if (parallel: n >= 4096)
      for (int64_t i = 0; i < n; ++i) {
        float sum = dU0[i];
        for (int t = 1; t < T; ++t) sum += wino_slot(plan, g, O, scratch, t).dU[i];
        dU0[i] = sum;
      }
    }
    winograd_weights_adjoint_add(dU0, O, C, gw);
  }
}

void conv2d_f32_forward(const float* px, int64_t N, const PatchGeom& g, int64_t O, const float* pw,
                        const float* pb, float* py, const ConvPlan& plan, float* scratch) {
  if (plan.winograd) {
    winograd_forward(px, N, g, O, pw, pb, py, plan, scratch);
    return;
  }
  const int64_t P = g.pixels(), K = g.taps(), img = g.image_size();
#pragma omp parallel num_threads(plan.threads) if (parallel: plan.parallel)
  {
    const int tid = omp_get_thread_num(), T = plan.threads;
    float* cols = plan.cols_of(scratch, tid);
    for (int64_t n0 = N * tid / T, n_end = N * (tid + 1) / T; n0 < n_end; n0 += plan.G) {
      const int64_t gc = std::min(plan.G, n_end - n0);
      if (gc == 1) {
        // y_n [O, P] = W2d [O, CKK] . cols [CKK, P] (+ bias rows), straight into NCHW
        float* yn = py + n0 * O * P;
        im2col_cols(px + n0 * img, g, 0.f, cols, P);
        if (pb)
          for (int64_t o = 0; o < O; ++o) std::fill(yn + o * P, yn + (o + 1) * P, pb[o]);
        sgemm(false, false, O, P, K, 1.f, pw, K, cols, P, pb ? 1.f : 0.f, yn, P);
      } else {
        // gc whole images: stage [O, L] = W2d . cols [CKK, L = gc*P]; image j's plane o is
        // stage[o, j*P : (j+1)*P]
        const int64_t L = gc * P;
        float* stage = cols + K * L;
        for (int64_t j = 0; j < gc; ++j) im2col_cols(px + (n0 + j) * img, g, 0.f, cols + j * P, L);
        sgemm(false, false, O, L, K, 1.f, pw, K, cols, L, 0.f, stage, L);
        for (int64_t j = 0; j < gc; ++j)
          for (int64_t o = 0; o < O; ++o) {
            const float* src = stage + o * L + j * P;
            float* dst = py + ((n0 + j) * O + o) * P;
            const float bo = pb ? pb[o] : 0.f;
            for (int64_t p = 0; p < P; ++p) dst[p] = src[p] + bo;
          }
      }
    }
  }
}

}  // namespace qnn::kernels
