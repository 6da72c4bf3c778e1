// kernels/winograd.cpp — F(2x2, 3x3) transforms and their adjoints (see winograd.h).
//
// Every transform walks a row of tiles with tx innermost and writes 16
// streams contiguous in tx, so the loops vectorise. The padded input plane is
// stored de-interleaved (even columns, then odd columns, per row): tile tx
// reads columns 2tx..2tx+3 = even[tx], odd[tx], even[tx+1], odd[tx+1], four
// unit-stride loads instead of a stride-2 gather.
//
// The four tile transforms are compiled three times (AVX-512, AVX2, baseline)
// from one always-inline body and chosen by active_isa() like the bit
// kernels; they only add, subtract and halve (no FMA contraction in kernels/),
// so every variant gives the same bits.
#include "kernels/winograd.h"

#include "kernels/isa.h"
#include "kernels/simd_target.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace qnn::kernels {

namespace {
// QNN_WINOGRAD's value -> mode; false for a value that is none of them.
bool parse_mode(const char* e, WinogradMode* m) {
  if (!e || !*e || std::strcmp(e, "auto") == 0) *m = WinogradMode::auto_size;
  else if (std::strcmp(e, "0") == 0) *m = WinogradMode::off;
  else if (std::strcmp(e, "1") == 0) *m = WinogradMode::always;
  else return false;
  return true;
}
WinogradMode initial_mode() {
  WinogradMode m = WinogradMode::auto_size;
  return parse_mode(std::getenv("QNN_WINOGRAD"), &m) ? m : WinogradMode::auto_size;
}
std::atomic<WinogradMode> g_mode{initial_mode()};
}  // namespace

void set_winograd_mode(WinogradMode m) { g_mode.store(m); }
WinogradMode winograd_mode() { return g_mode.load(); }
const char* winograd_mode_name(WinogradMode m) {
  return m == WinogradMode::off ? "off" : m == WinogradMode::always ? "always" : "auto";
}
void set_winograd(bool on) { set_winograd_mode(on ? WinogradMode::always : WinogradMode::off); }
bool winograd_enabled() { return winograd_mode() != WinogradMode::off; }

void apply_winograd_env() {
  const char* e = std::getenv("QNN_WINOGRAD");
  WinogradMode m = WinogradMode::auto_size;
  if (!parse_mode(e, &m))
    throw std::invalid_argument(std::string("QNN_WINOGRAD=") + e + ": expected 0 (off), 1 (always) or auto");
  set_winograd_mode(m);
}

bool winograd_applies(const PatchGeom& g) {
  return winograd_enabled() && g.KH == 3 && g.KW == 3 && g.stride == 1 && g.C >= kWinogradMinChannels &&
         g.OH >= 1 && g.OW >= 1;
}

WinogradTiles winograd_tiles(const PatchGeom& g) {
  WinogradTiles t;
  t.th = (g.OH + 1) / 2;
  t.tw = (g.OW + 1) / 2;
  t.half = t.tw + 1;
  t.rows = 2 * t.th + 2;
  return t;
}

// ---- weights ----------------------------------------------------------------------------
// U = G w G^T:  (G w) rows: w0, (w0+w1+w2)/2, (w0-w1+w2)/2, w2; then the same on columns.
void winograd_weights(const float* w, int64_t O, int64_t C, float* U) {
  const int64_t OC = O * C;
  for (int64_t oc = 0; oc < OC; ++oc) {
    const float* k = w + oc * 9;
    float r[4][3];
    for (int j = 0; j < 3; ++j) {
      const float a = k[j], b = k[3 + j], c = k[6 + j];
      r[0][j] = a;
      r[1][j] = 0.5f * (a + b + c);
      r[2][j] = 0.5f * (a - b + c);
      r[3][j] = c;
    }
    for (int i = 0; i < 4; ++i) {
      const float a = r[i][0], b = r[i][1], c = r[i][2];
      U[(4 * i + 0) * OC + oc] = a;
      U[(4 * i + 1) * OC + oc] = 0.5f * (a + b + c);
      U[(4 * i + 2) * OC + oc] = 0.5f * (a - b + c);
      U[(4 * i + 3) * OC + oc] = c;
    }
  }
}

// dw += G^T dU G:  (G^T X) rows: X0 + (X1+X2)/2, (X1-X2)/2, (X1+X2)/2 + X3; then the same on columns.
void winograd_weights_adjoint_add(const float* dU, int64_t O, int64_t C, float* dw) {
  const int64_t OC = O * C;
  for (int64_t oc = 0; oc < OC; ++oc) {
    float r[3][4];
    for (int j = 0; j < 4; ++j) {
      const float x0 = dU[(0 + j) * OC + oc], x1 = dU[(4 + j) * OC + oc], x2 = dU[(8 + j) * OC + oc],
                  x3 = dU[(12 + j) * OC + oc];
      r[0][j] = x0 + 0.5f * (x1 + x2);
      r[1][j] = 0.5f * (x1 - x2);
      r[2][j] = 0.5f * (x1 + x2) + x3;
    }
    float* k = dw + oc * 9;
    for (int i = 0; i < 3; ++i) {
      const float x0 = r[i][0], x1 = r[i][1], x2 = r[i][2], x3 = r[i][3];
      k[3 * i + 0] += x0 + 0.5f * (x1 + x2);
      k[3 * i + 1] += 0.5f * (x1 - x2);
      k[3 * i + 2] += 0.5f * (x1 + x2) + x3;
    }
  }
}

// ---- inputs -----------------------------------------------------------------------------
namespace {
#define QNN_ALWAYS_INLINE inline __attribute__((always_inline))

// Plane layout for a group of gc images, image innermost: padded row r,
// even column k, image j at plane[r*2*half*gc + k*gc + j], the odd columns
// after the even ones. Tile (ty, tx) of image j then reads index m = tx*gc + j
// and m + gc of four rows — linear in m, so every loop below runs over
// m in [0, tw*gc) and vectorises whether the map is large (gc = 1) or small
// (an 8x8 map has tw = 4 but 16 images).

// plane <- channel c of gc images, zero-padded, de-interleaved, image innermost.
QNN_ALWAYS_INLINE void load_plane(const float* x, int64_t gc, int64_t c, const PatchGeom& g, const WinogradTiles& t,
                                  float* plane) {
  const int64_t H = g.H, W = g.W, pad = g.pad, half = t.half, img = g.image_size(), rs = 2 * half * gc;
  std::fill(plane, plane + t.rows * rs, 0.f);
  for (int64_t j = 0; j < gc; ++j) {
    const float* xc = x + j * img + c * H * W;
    for (int64_t iy = 0; iy < H; ++iy) {
      float* ev = plane + (iy + pad) * rs + j;
      float* od = ev + half * gc;
      const float* row = xc + iy * W;
      for (int64_t ix = 0; ix < W; ++ix) {
        const int64_t pc = ix + pad;
        ((pc & 1) ? od : ev)[(pc >> 1) * gc] = row[ix];
      }
    }
  }
}

// dx (channel c of gc images) += the image part of a plane.
QNN_ALWAYS_INLINE void store_plane_add(const float* plane, int64_t gc, int64_t c, const PatchGeom& g,
                                       const WinogradTiles& t, float* dx) {
  const int64_t H = g.H, W = g.W, pad = g.pad, half = t.half, img = g.image_size(), rs = 2 * half * gc;
  for (int64_t j = 0; j < gc; ++j) {
    float* dxc = dx + j * img + c * H * W;
    for (int64_t iy = 0; iy < H; ++iy) {
      const float* ev = plane + (iy + pad) * rs + j;
      const float* od = ev + half * gc;
      float* row = dxc + iy * W;
      for (int64_t ix = 0; ix < W; ++ix) {
        const int64_t pc = ix + pad;
        row[ix] += ((pc & 1) ? od : ev)[(pc >> 1) * gc];
      }
    }
  }
}

// V = B^T d B per tile:  (B^T d) rows: d0-d2, d1+d2, d2-d1, d1-d3; then the same on columns.
QNN_ALWAYS_INLINE void input_body(const float* x, int64_t gc, const PatchGeom& g, const WinogradTiles& t,
                                  float* plane, float* V, int64_t ld) {
  const int64_t C = g.C, tw = t.tw, half = t.half, rs = 2 * half * gc, hg = half * gc, n = tw * gc;
  const int64_t xs = C * ld;  // stride between transform positions in V
  for (int64_t c = 0; c < C; ++c) {
    load_plane(x, gc, c, g, t, plane);
    float* vc = V + c * ld;
    for (int64_t ty = 0; ty < t.th; ++ty) {
      const float* e0 = plane + (2 * ty) * rs;
      const float* e1 = e0 + rs;
      const float* e2 = e1 + rs;
      const float* e3 = e2 + rs;
      const float *o0 = e0 + hg, *o1 = e1 + hg, *o2 = e2 + hg, *o3 = e3 + hg;
      float* v = vc + ty * n;
#pragma omp simd
      for (int64_t m = 0; m < n; ++m) {
        // tile columns 0..3: even[m], odd[m], even[m + gc], odd[m + gc]
        const int64_t k = m + gc;
        float r[4][4];
        r[0][0] = e0[m] - e2[m];
        r[0][1] = o0[m] - o2[m];
        r[0][2] = e0[k] - e2[k];
        r[0][3] = o0[k] - o2[k];
        r[1][0] = e1[m] + e2[m];
        r[1][1] = o1[m] + o2[m];
        r[1][2] = e1[k] + e2[k];
        r[1][3] = o1[k] + o2[k];
        r[2][0] = e2[m] - e1[m];
        r[2][1] = o2[m] - o1[m];
        r[2][2] = e2[k] - e1[k];
        r[2][3] = o2[k] - o1[k];
        r[3][0] = e1[m] - e3[m];
        r[3][1] = o1[m] - o3[m];
        r[3][2] = e1[k] - e3[k];
        r[3][3] = o1[k] - o3[k];
        for (int i = 0; i < 4; ++i) {
          v[(4 * i + 0) * xs + m] = r[i][0] - r[i][2];
          v[(4 * i + 1) * xs + m] = r[i][1] + r[i][2];
          v[(4 * i + 2) * xs + m] = r[i][2] - r[i][1];
          v[(4 * i + 3) * xs + m] = r[i][1] - r[i][3];
        }
      }
    }
  }
}

// dd = B dV B^T per tile:  (B X) rows: X0, X1-X2+X3, X1+X2-X0, -X3; then the same on columns.
// Tiles overlap by two rows and columns, so their contributions add up in the plane:
// each tile row's 16 values go to dd[16][tw*gc] first, then onto the plane row by row.
QNN_ALWAYS_INLINE void input_adjoint_body(const float* dV, int64_t ld, int64_t gc, const PatchGeom& g,
                                          const WinogradTiles& t, float* plane, float* dd, float* dx) {
  const int64_t C = g.C, tw = t.tw, half = t.half, rs = 2 * half * gc, hg = half * gc, n = tw * gc;
  const int64_t xs = C * ld;
  for (int64_t c = 0; c < C; ++c) {
    std::fill(plane, plane + t.rows * rs, 0.f);
    const float* vc = dV + c * ld;
    for (int64_t ty = 0; ty < t.th; ++ty) {
      const float* v = vc + ty * n;
#pragma omp simd
      for (int64_t m = 0; m < n; ++m) {
        float r[4][4];  // B X
        for (int k = 0; k < 4; ++k) {
          const float x0 = v[(0 + k) * xs + m], x1 = v[(4 + k) * xs + m], x2 = v[(8 + k) * xs + m],
                      x3 = v[(12 + k) * xs + m];
          r[0][k] = x0;
          r[1][k] = x1 - x2 + x3;
          r[2][k] = x1 + x2 - x0;
          r[3][k] = -x3;
        }
        for (int i = 0; i < 4; ++i) {
          dd[(4 * i + 0) * n + m] = r[i][0];
          dd[(4 * i + 1) * n + m] = r[i][1] - r[i][2] + r[i][3];
          dd[(4 * i + 2) * n + m] = r[i][1] + r[i][2] - r[i][0];
          dd[(4 * i + 3) * n + m] = -r[i][3];
        }
      }
      for (int i = 0; i < 4; ++i) {
        float* e = plane + (2 * ty + i) * rs;
        float* o = e + hg;
        const float* d0 = dd + (4 * i) * n;
        const float* d1 = d0 + n;
        const float* d2 = d1 + n;
        const float* d3 = d2 + n;
#pragma omp simd
        for (int64_t m = 0; m < n; ++m) {
          e[m] += d0[m];
          o[m] += d1[m];
        }
#pragma omp simd
        for (int64_t m = 0; m < n; ++m) {
          e[m + gc] += d2[m];
          o[m + gc] += d3[m];
        }
      }
    }
    store_plane_add(plane, gc, c, g, t, dx);
  }
}

// Y = A^T m A per tile:  (A^T m) rows: m0+m1+m2, m1-m2-m3; then the same on columns.
QNN_ALWAYS_INLINE void output_body(const float* M, int64_t ld, int64_t gc, int64_t O, const PatchGeom& g,
                                   const WinogradTiles& t, const float* bias, float* quad, float* y) {
  const int64_t OH = g.OH, OW = g.OW, tw = t.tw, n = tw * gc, plane = OH * OW;
  const int64_t xs = O * ld;
  for (int64_t o = 0; o < O; ++o) {
    const float bo = bias ? bias[o] : 0.f;
    const float* mo = M + o * ld;
    for (int64_t ty = 0; ty < t.th; ++ty) {
      const float* mm = mo + ty * n;
      float* q = quad;  // y00, y01, y10, y11 of one tile row, [4][n]
#pragma omp simd
      for (int64_t m = 0; m < n; ++m) {
        float s[2][4];
        for (int k = 0; k < 4; ++k) {
          const float x0 = mm[(0 + k) * xs + m], x1 = mm[(4 + k) * xs + m], x2 = mm[(8 + k) * xs + m],
                      x3 = mm[(12 + k) * xs + m];
          s[0][k] = x0 + x1 + x2;
          s[1][k] = x1 - x2 - x3;
        }
        q[m] = s[0][0] + s[0][1] + s[0][2] + bo;
        q[n + m] = s[0][1] - s[0][2] - s[0][3] + bo;
        q[2 * n + m] = s[1][0] + s[1][1] + s[1][2] + bo;
        q[3 * n + m] = s[1][1] - s[1][2] - s[1][3] + bo;
      }
      for (int i = 0; i < 2; ++i) {
        const int64_t oy = 2 * ty + i;
        if (oy >= OH) break;
        const float* q0 = q + 2 * i * n;
        const float* q1 = q0 + n;
        for (int64_t j = 0; j < gc; ++j) {
          float* row = y + (j * O + o) * plane + oy * OW;
          for (int64_t tx = 0; tx < OW / 2; ++tx) {
            row[2 * tx] = q0[tx * gc + j];
            row[2 * tx + 1] = q1[tx * gc + j];
          }
          if (OW & 1) row[OW - 1] = q0[(tw - 1) * gc + j];
        }
      }
    }
  }
}

// dM = A dY A^T per tile:  (A X) rows: X0, X0+X1, X0-X1, -X1; then the same on columns.
// Outputs past an odd edge do not exist: their gradient is 0.
QNN_ALWAYS_INLINE void output_adjoint_body(const float* gy, int64_t gc, int64_t O, const PatchGeom& g,
                                           const WinogradTiles& t, float* quad, float* dM, int64_t ld) {
  const int64_t OH = g.OH, OW = g.OW, tw = t.tw, n = tw * gc, plane = OH * OW;
  const int64_t xs = O * ld;
  for (int64_t o = 0; o < O; ++o) {
    float* mo = dM + o * ld;
    for (int64_t ty = 0; ty < t.th; ++ty) {
      float* q = quad;  // g00, g01, g10, g11 of one tile row, [4][n]
      for (int i = 0; i < 2; ++i) {
        float* q0 = q + 2 * i * n;
        float* q1 = q0 + n;
        const int64_t oy = 2 * ty + i;
        if (oy >= OH) {
          std::fill(q0, q0 + 2 * n, 0.f);
          continue;
        }
        for (int64_t j = 0; j < gc; ++j) {
          const float* row = gy + (j * O + o) * plane + oy * OW;
          for (int64_t tx = 0; tx < OW / 2; ++tx) {
            q0[tx * gc + j] = row[2 * tx];
            q1[tx * gc + j] = row[2 * tx + 1];
          }
          if (OW & 1) {
            q0[(tw - 1) * gc + j] = row[OW - 1];
            q1[(tw - 1) * gc + j] = 0.f;
          }
        }
      }
      float* mm = mo + ty * n;
#pragma omp simd
      for (int64_t m = 0; m < n; ++m) {
        const float g00 = q[m], g01 = q[n + m], g10 = q[2 * n + m], g11 = q[3 * n + m];
        const float r[4][2] = {{g00, g01}, {g00 + g10, g01 + g11}, {g00 - g10, g01 - g11}, {-g10, -g11}};
        for (int a = 0; a < 4; ++a) {
          const float p = r[a][0], s = r[a][1];
          mm[(4 * a + 0) * xs + m] = p;
          mm[(4 * a + 1) * xs + m] = p + s;
          mm[(4 * a + 2) * xs + m] = p - s;
          mm[(4 * a + 3) * xs + m] = -s;
        }
      }
    }
  }
}

// The three compilations of each body (see the top of the file).
#define QNN_WINO_VARIANTS(name, params, args)             \
  void name##_scalar params { name##_body args; }         \
  QNN_TARGET_AVX2 void name##_avx2 params { name##_body args; } \
  QNN_TARGET_AVX512 void name##_avx512 params { name##_body args; }

QNN_WINO_VARIANTS(input,
                  (const float* x, int64_t gc, const PatchGeom& g, const WinogradTiles& t, float* plane, float* V,
                   int64_t ld),
                  (x, gc, g, t, plane, V, ld))
QNN_WINO_VARIANTS(input_adjoint,
                  (const float* dV, int64_t ld, int64_t gc, const PatchGeom& g, const WinogradTiles& t, float* plane,
                   float* dd, float* dx),
                  (dV, ld, gc, g, t, plane, dd, dx))
QNN_WINO_VARIANTS(output,
                  (const float* M, int64_t ld, int64_t gc, int64_t O, const PatchGeom& g, const WinogradTiles& t,
                   const float* bias, float* quad, float* y),
                  (M, ld, gc, O, g, t, bias, quad, y))
QNN_WINO_VARIANTS(output_adjoint,
                  (const float* gy, int64_t gc, int64_t O, const PatchGeom& g, const WinogradTiles& t, float* quad,
                   float* dM, int64_t ld),
                  (gy, gc, O, g, t, quad, dM, ld))
#undef QNN_WINO_VARIANTS

#define QNN_WINO_DISPATCH(name, ...)               \
  switch (active_isa()) {                          \
    case Isa::avx512: name##_avx512(__VA_ARGS__); break; \
    case Isa::avx2: name##_avx2(__VA_ARGS__); break;     \
    default: name##_scalar(__VA_ARGS__); break;          \
  }
}  // namespace

void winograd_input(const float* x, int64_t gc, const PatchGeom& g, const WinogradTiles& t, float* plane, float* V,
                    int64_t ld) {
  QNN_WINO_DISPATCH(input, x, gc, g, t, plane, V, ld)
}

void winograd_input_adjoint_add(const float* dV, int64_t ld, int64_t gc, const PatchGeom& g, const WinogradTiles& t,
                                float* plane, float* dx) {
  std::vector<float> dd(size_t(16 * t.tw * gc));
  QNN_WINO_DISPATCH(input_adjoint, dV, ld, gc, g, t, plane, dd.data(), dx)
}

void winograd_output(const float* M, int64_t ld, int64_t gc, int64_t O, const PatchGeom& g, const WinogradTiles& t,
                     const float* bias, float* y) {
  std::vector<float> quad(size_t(4 * t.tw * gc));
  QNN_WINO_DISPATCH(output, M, ld, gc, O, g, t, bias, quad.data(), y)
}

void winograd_output_adjoint(const float* gy, int64_t gc, int64_t O, const PatchGeom& g, const WinogradTiles& t,
                             float* dM, int64_t ld) {
  std::vector<float> quad(size_t(4 * t.tw * gc));
  QNN_WINO_DISPATCH(output_adjoint, gy, gc, O, g, t, quad.data(), dM, ld)
}

}  // namespace qnn::kernels
