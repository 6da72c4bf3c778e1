// kernels/conv_f32.cpp — the float convolution's forward (see conv_f32.h).
#include "kernels/conv_f32.h"

#include <omp.h>

#include <algorithm>

#include "kernels/sgemm.h"

namespace qnn::kernels {

ConvPlan::ConvPlan(int64_t N, const PatchGeom& g, int64_t O) {
  const int64_t P = g.pixels(), K = g.taps();
  const int T = omp_in_parallel() ? 1 : num_threads();
  parallel = T > 1 && N >= T;
  threads = parallel ? T : 1;
  const int64_t per_thread = (N + threads - 1) / threads;
  G = std::max<int64_t>(1, std::min(per_thread, (kMinGemmCols + P - 1) / P));
  slot = K * G * P + (G > 1 ? O * G * P : 0);
}

void conv2d_f32_forward(const float* px, int64_t N, const PatchGeom& g, int64_t O, const float* pw,
                        const float* pb, float* py, const ConvPlan& plan, float* scratch) {
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
