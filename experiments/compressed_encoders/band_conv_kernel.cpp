// An experiment of micro_band_conv.py (not used by the library): grouped 3D convolution with d -> d
// channels per group (the irrep-wise depthwise step), channels-last, vectorised along the channels.
//
// Output channel o of group g = o / d reads input channels g d .. g d + d - 1, i.e. channel o + j for
// the shifts j = -(d-1) .. d-1 that stay in the group.  The convolution is then a sum over kernel offsets
// and shifts of products of the input shifted by j channels with a "band" weight wband[offset][j][o]
// (zero where o + j leaves o's group): every product is a multiply-add of 16 consecutive channels, for
// any d, at (2d - 1) / d times the convolution's multiply-adds.  Each shifted input vector is loaded once
// and feeds the K outputs (forward) or output gradients (weight gradient) it meets along x.
//
// Inputs come padded from Python: xpad (N, Z + 2p, Y + 2p, X + 2p, Cw + 2(d - 1)) with the spatial zero
// padding and d - 1 zero channels on each side of the C channels rounded up to Cw (a multiple of 16), so
// shifted loads never leave a voxel's row; wband (K^3, 2d - 1, Cw); stride 1.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t W = 16;
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

inline v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
inline void store(float* p, v16 v) { *reinterpret_cast<v16u*>(p) = v; }
inline v16 zero() { return v16{} ; }

struct Geometry {
  int64_t n, zp, yp, xp, cp;   // padded input
  int64_t zo, yo, xo;          // output
  int64_t c, cw;
};

// Output voxels x0 .. x0 + XB - 1 of one row (stride 1), channels o0 .. o0 + 15.  Each shifted input
// vector is loaded once and feeds the K outputs it reaches (one per kernel offset along x).
template <int D, int K, int XB>
inline void forward_block(const float* x_row0, const float* wband, const Geometry& g, int64_t x0, int64_t o0,
                          float* out) {
  constexpr int J = 2 * D - 1;
  v16 acc[XB];
  for (int i = 0; i < XB; ++i) acc[i] = zero();
  for (int a = 0; a < K; ++a) {
    for (int b = 0; b < K; ++b) {
      const float* row = x_row0 + (a * g.yp + b) * g.xp * g.cp + (D - 1) + o0 + x0 * g.cp;
      const float* wp = wband + (a * K + b) * K * J * g.cw + o0;
      for (int jj = 0; jj < J; ++jj) {
        v16 w[K];
        for (int c = 0; c < K; ++c) w[c] = load(wp + (c * J + jj) * g.cw);
        const float* src = row + jj - (D - 1);
#pragma GCC unroll 16
        for (int t = 0; t < XB + K - 1; ++t) {
          const v16 v = load(src + t * g.cp);
#pragma GCC unroll 8
          for (int c = 0; c < K; ++c) {
            const int i = t - c;
            if (i >= 0 && i < XB) acc[i] += w[c] * v;
          }
        }
      }
    }
  }
  const int64_t lanes = std::min<int64_t>(W, g.c - o0);
  for (int i = 0; i < XB; ++i) {
    float* dst = out + (x0 + i) * g.c + o0;
    if (lanes == W) {
      store(dst, acc[i]);
    } else {
      float tail[W];
      store(tail, acc[i]);
      std::memcpy(dst, tail, lanes * sizeof(float));
    }
  }
}

template <int D, int K>
void forward_impl(const float* xpad, const float* wband, float* out, const Geometry& g) {
  at::parallel_for(0, g.n * g.zo * g.yo, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / (g.zo * g.yo), z = (r / g.yo) % g.zo, y = r % g.yo;
      const float* x_row0 = xpad + ((n * g.zp + z) * g.yp + y) * g.xp * g.cp;
      float* out_row = out + ((n * g.zo + z) * g.yo + y) * g.xo * g.c;
      for (int64_t o0 = 0; o0 < g.c; o0 += W) {
        int64_t x0 = 0;
        for (; x0 + 8 <= g.xo; x0 += 8) forward_block<D, K, 8>(x_row0, wband, g, x0, o0, out_row);
        for (; x0 + 4 <= g.xo; x0 += 4) forward_block<D, K, 4>(x_row0, wband, g, x0, o0, out_row);
        for (; x0 < g.xo; ++x0) forward_block<D, K, 1>(x_row0, wband, g, x0, o0, out_row);
      }
    }
  });
}

// Shifts jb .. jb + JB - 1 of the weight gradient for one output row, kernel row (a, b), channels
// o0 .. o0 + 15: each shifted input vector is loaded once and meets the K output gradients it pairs with.
template <int D, int K, int JB>
inline void weight_block(const float* row, const float* grow, float* dwp, const Geometry& g, int jb) {
  constexpr int J = 2 * D - 1;
  v16 acc[K][JB];
  for (int c = 0; c < K; ++c)
    for (int j = 0; j < JB; ++j) acc[c][j] = load(dwp + (c * J + jb + j) * g.cw);
  const int64_t xi = g.xo + K - 1;
  for (int64_t t = 0; t < xi; ++t) {
#pragma GCC unroll 16
    for (int j = 0; j < JB; ++j) {
      const v16 v = load(row + t * g.cp + jb + j - (D - 1));
#pragma GCC unroll 8
      for (int c = 0; c < K; ++c) {
        const int64_t x = t - c;
        if (x >= 0 && x < g.xo) acc[c][j] += load(grow + x * g.cw) * v;
      }
    }
  }
  for (int c = 0; c < K; ++c)
    for (int j = 0; j < JB; ++j) store(dwp + (c * J + jb + j) * g.cw, acc[c][j]);
}

// dwband[offset][jj][o] += sum over voxels of gout[v][o] * xpad[v shifted by the offset][o + j].
template <int D, int K>
void weight_grad_impl(const float* xpad, const float* gpad, float* dwband, const Geometry& g) {
  constexpr int J = 2 * D - 1;
  constexpr int JB = J < 7 ? J : 7;
  const int64_t size = K * K * K * J * g.cw;
  const int threads = at::get_num_threads();
  std::vector<std::vector<float>> partial(threads);
  at::parallel_for(0, g.n * g.zo * g.yo, 1, [&](int64_t begin, int64_t end) {
    std::vector<float>& mine = partial[at::get_thread_num()];
    if (mine.empty()) mine.assign(size, 0.0f);
    float* dw = mine.data();
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / (g.zo * g.yo), z = (r / g.yo) % g.zo, y = r % g.yo;
      const float* grow0 = gpad + ((n * g.zo + z) * g.yo + y) * g.xo * g.cw;
      const float* x_row0 = xpad + ((n * g.zp + z) * g.yp + y) * g.xp * g.cp;
      for (int a = 0; a < K; ++a) {
        for (int b = 0; b < K; ++b) {
          const float* row0 = x_row0 + (a * g.yp + b) * g.xp * g.cp + (D - 1);
          for (int64_t o0 = 0; o0 < g.cw; o0 += W) {
            float* dwp = dw + (a * K + b) * K * J * g.cw + o0;
            int jb = 0;
            for (; jb + JB <= J; jb += JB) weight_block<D, K, JB>(row0 + o0, grow0 + o0, dwp, g, jb);
            for (; jb < J; ++jb) weight_block<D, K, 1>(row0 + o0, grow0 + o0, dwp, g, jb);
          }
        }
      }
    }
  });
  std::fill(dwband, dwband + size, 0.0f);
  for (const auto& p : partial) {
    if (p.empty()) continue;
    for (int64_t i = 0; i < size; ++i) dwband[i] += p[i];
  }
}

Geometry geometry(const torch::Tensor& xpad, int64_t c, int64_t k) {
  Geometry g;
  g.n = xpad.size(0); g.zp = xpad.size(1); g.yp = xpad.size(2); g.xp = xpad.size(3); g.cp = xpad.size(4);
  g.zo = g.zp - k + 1; g.yo = g.yp - k + 1; g.xo = g.xp - k + 1;
  g.c = c; g.cw = (c + W - 1) / W * W;
  return g;
}

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous(), name,
              " must be a contiguous float32 CPU tensor");
}

using Impl = void (*)(const float*, const float*, float*, const Geometry&);

// The instantiated kernels: kernel size 3, d = 1, 3, 5, 7 (irreps l = 0 .. 3); nullptr otherwise.
Impl pick(bool weight, int64_t d, int64_t k) {
  if (k != 3) return nullptr;
  switch (d) {
    case 1: return weight ? weight_grad_impl<1, 3> : forward_impl<1, 3>;
    case 3: return weight ? weight_grad_impl<3, 3> : forward_impl<3, 3>;
    case 5: return weight ? weight_grad_impl<5, 3> : forward_impl<5, 3>;
    case 7: return weight ? weight_grad_impl<7, 3> : forward_impl<7, 3>;
    default: return nullptr;
  }
}

torch::Tensor forward(torch::Tensor xpad, torch::Tensor wband, int64_t c, int64_t d, int64_t k) {
  check(xpad, "xpad");
  check(wband, "wband");
  const Geometry g = geometry(xpad, c, k);
  TORCH_CHECK(g.cp == g.cw + 2 * (d - 1) && wband.numel() == k * k * k * (2 * d - 1) * g.cw, "bad padded shapes");
  auto result = torch::empty({g.n, g.zo, g.yo, g.xo, c}, xpad.options());
  const float* xp = xpad.data_ptr<float>();
  const float* wp = wband.data_ptr<float>();
  float* op = result.data_ptr<float>();
  const Impl impl = pick(false, d, k);
  TORCH_CHECK(impl != nullptr, "no kernel for d = ", d, ", k = ", k);
  impl(xp, wp, op, g);
  return result;
}

torch::Tensor weight_grad(torch::Tensor xpad, torch::Tensor gpad, int64_t c, int64_t d, int64_t k) {
  check(xpad, "xpad");
  check(gpad, "gpad");
  const Geometry g = geometry(xpad, c, k);
  TORCH_CHECK(gpad.size(1) == g.zo && gpad.size(2) == g.yo && gpad.size(3) == g.xo && gpad.size(4) == g.cw,
              "bad padded gradient shape");
  auto result = torch::empty({k * k * k, 2 * d - 1, g.cw}, xpad.options());
  const float* xp = xpad.data_ptr<float>();
  const float* gp = gpad.data_ptr<float>();
  float* rp = result.data_ptr<float>();
  const Impl impl = pick(true, d, k);
  TORCH_CHECK(impl != nullptr, "no kernel for d = ", d, ", k = ", k);
  impl(xp, gp, rp, g);
  return result;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "grouped channels-last convolution, band form (xpad, wband, c, d, k) -> y");
  m.def("weight_grad", &weight_grad, "its band-form weight gradient (xpad, gpad, c, d, k) -> dwband");
}
