// The Clebsch-Gordan tensor product of atompaint.encoders.tensor_product in one pass over the voxels.
//
// The plain-PyTorch form (CGTensorProductCore.contract) gathers the pair factors, forms their products,
// contracts them with the Clebsch-Gordan columns and projects the result with the learned weights as
// separate kernels, each reading and writing whole tensors; in training it recomputes all of that in the
// backward pass.  Here each channel's fields are processed in tiles of TILE voxels that stay in the
// cache: the products, contractions and projections (and in the backward pass their gradients) run on
// the tile, and only the input, the output and the weight gradients touch memory.  The arithmetic is the
// same as the plain form's (dense Clebsch-Gordan blocks), so the analytic FLOP count describes both.
//
// The structure of the product (which copies are paired, the Clebsch-Gordan blocks, which output irrep
// each block feeds) comes from Python as a flat int64 "spec" tensor and a float tensor of blocks; see
// atompaint/encoders/_cg_fused.py, which builds them.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace {

// Voxels per tile: the fastest of 64-512 at all three seed-004 resolutions (experiments/
// compressed_encoders/micro_cg_tile.py, which builds other sizes with -DCG_TILE=n).
#ifndef CG_TILE
#define CG_TILE 128
#endif
constexpr int64_t TILE = CG_TILE;
#ifndef CG_RUNTIME_COUNT
#define CG_RUNTIME_COUNT 0
#endif
// -DCG_SKIP_ZEROS=1 skips the zero Clebsch-Gordan coefficients (an experiment of micro_cg_tile.py: the
// analytic FLOP count describes the dense blocks, which the default build runs).
#ifndef CG_SKIP_ZEROS
#define CG_SKIP_ZEROS 0
#endif

struct Feed {
  int64_t irrep;   // index into Program::irreps (and the weight list)
  int64_t offset;  // first Clebsch-Gordan column of the block
  int64_t start;   // path index of the group's first pair among the irrep's paths
};

struct Group {
  int64_t pairs, d1, d2, k, cg_offset;
  std::vector<int64_t> left, right;  // (pairs, d1) and (pairs, d2) input rows
  std::vector<Feed> feeds;
};

struct Irrep {
  int64_t copies, dim, paths;
  std::vector<int64_t> rows;  // (copies, dim) output rows
};

struct Program {
  int64_t d_in = 0, d_out = 0, max_k = 0, max_outer = 0;
  std::vector<Irrep> irreps;
  std::vector<Group> groups;
};

Program parse(const at::Tensor& spec) {
  TORCH_CHECK(spec.scalar_type() == at::kLong && spec.dim() == 1, "spec must be a 1-d int64 tensor");
  auto s = spec.contiguous();
  const int64_t* p = s.data_ptr<int64_t>();
  const int64_t n = s.numel();
  int64_t i = 0;
  auto next = [&]() {
    TORCH_CHECK(i < n, "spec ends early");
    return p[i++];
  };
  Program prog;
  prog.d_in = next();
  prog.d_out = next();
  const int64_t n_irreps = next(), n_groups = next();
  for (int64_t r = 0; r < n_irreps; ++r) {
    Irrep irrep;
    irrep.copies = next();
    irrep.dim = next();
    irrep.paths = next();
    for (int64_t j = 0; j < irrep.copies * irrep.dim; ++j) irrep.rows.push_back(next());
    prog.irreps.push_back(std::move(irrep));
  }
  int64_t cg_offset = 0;
  for (int64_t g = 0; g < n_groups; ++g) {
    Group group;
    group.pairs = next();
    group.d1 = next();
    group.d2 = next();
    group.k = next();
    const int64_t n_feeds = next();
    for (int64_t j = 0; j < group.pairs * group.d1; ++j) group.left.push_back(next());
    for (int64_t j = 0; j < group.pairs * group.d2; ++j) group.right.push_back(next());
    for (int64_t f = 0; f < n_feeds; ++f) {
      Feed feed;
      feed.irrep = next();
      feed.offset = next();
      feed.start = next();
      group.feeds.push_back(feed);
    }
    group.cg_offset = cg_offset;
    cg_offset += group.k * group.d1 * group.d2;
    prog.max_k = std::max(prog.max_k, group.k);
    prog.max_outer = std::max(prog.max_outer, group.d1 * group.d2);
    prog.groups.push_back(std::move(group));
  }
  TORCH_CHECK(i == n, "spec has ", n - i, " numbers left over");
  return prog;
}

// out[t] = sum_r coef[r * stride] * rows[r * TILE + t] for the n voxels of a tile, summed in a local
// array: with the running sum in memory that the rows might alias, every step of the sum was stored,
// and the stores limited the loop.
template <typename T, typename N>
inline void combine_rows(const T* coef, int64_t stride, const T* rows, int64_t count, N n_, T* out) {
  const int64_t n = n_;
  alignas(64) T sum[TILE];
#pragma omp simd
  for (int64_t t = 0; t < n; ++t) sum[t] = T(0);
  for (int64_t r = 0; r < count; ++r) {
    const T c = coef[r * stride];
    if (CG_SKIP_ZEROS && c == T(0)) continue;
    const T* row = rows + r * TILE;
#pragma omp simd
    for (int64_t t = 0; t < n; ++t) sum[t] += c * row[t];
  }
  std::copy(sum, sum + n, out);
}

// One pair's products of its factors (outer: (d1 d2, TILE)) and their Clebsch-Gordan contraction
// (z: (k, TILE)) on the n voxels of a tile.
template <typename T, typename N>
inline void pair_products(const Group& g, int64_t p, const T* x, int64_t V, N n_, const T* cg, T* outer, T* z) {
  const int64_t n = n_;
  for (int64_t a = 0; a < g.d1; ++a) {
    const T* xl = x + g.left[p * g.d1 + a] * V;
    for (int64_t b = 0; b < g.d2; ++b) {
      const T* xr = x + g.right[p * g.d2 + b] * V;
      T* o = outer + (a * g.d2 + b) * TILE;
#pragma omp simd
      for (int64_t t = 0; t < n; ++t) o[t] = xl[t] * xr[t];
    }
  }
  const int64_t dd = g.d1 * g.d2;
  for (int64_t k = 0; k < g.k; ++k) {
    const T* row = cg + k * dd;
    combine_rows(row, 1, outer, dd, n_, z + k * TILE);
  }
}

// The tiles of one field (x: its d_in rows of V voxels): acc (rows of TILE) is zeroed, body(g, cg of g, p,
// v0, n) runs for every pair p of every group g after pair_products put the pair's contraction in z, and
// acc's first `rows` rows are written to out (rows of V).
template <typename T, typename Body>
void over_tiles(const Program& prog, const T* x, int64_t V, const T* cg, T* outer, T* z, T* acc, int64_t rows, T* out,
                Body&& body) {
  for (int64_t v0 = 0; v0 < V; v0 += TILE) {
    const int64_t n = std::min(TILE, V - v0);
    auto tile = [&](auto count) {
      std::fill(acc, acc + rows * TILE, T(0));
      for (const Group& g : prog.groups) {
        const T* cgg = cg + g.cg_offset;
        for (int64_t p = 0; p < g.pairs; ++p) {
          pair_products(g, p, x + v0, V, count, cgg, outer, z);
          body(g, cgg, p, v0, count);
        }
      }
    };
    // Whole tiles with a compile-time trip count, so the inner loops unroll into whole vectors
    // (CG_RUNTIME_COUNT=1 builds the run-time-count form, for micro_cg_tile.py's comparison).
    if (n == TILE && !CG_RUNTIME_COUNT)
      tile(std::integral_constant<int64_t, TILE>{});
    else
      tile(n);
    for (int64_t row = 0; row < rows; ++row)
      std::copy(acc + row * TILE, acc + row * TILE + n, out + row * V + v0);
  }
}

template <typename T>
void forward_impl(const Program& prog, const at::Tensor& x, const std::vector<at::Tensor>& weights,
                  const at::Tensor& cg_blocks, at::Tensor& y) {
  const int64_t B = x.size(0), V = x.size(2), C = x.size(1) / prog.d_in;
  const T* xp = x.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  const T* cg = cg_blocks.data_ptr<T>();
  std::vector<const T*> w;
  for (const auto& t : weights) w.push_back(t.data_ptr<T>());
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> outer(prog.max_outer * TILE), z(prog.max_k * TILE), acc(prog.d_out * TILE);
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t c = bc % C;
      over_tiles(prog, xp + bc * prog.d_in * V, V, cg, outer.data(), z.data(), acc.data(), prog.d_out,
                 yp + bc * prog.d_out * V, [&](const Group& g, const T*, int64_t p, int64_t, auto count) {
        const int64_t n = count;
        for (const Feed& f : g.feeds) {
          const Irrep& r = prog.irreps[f.irrep];
          const T* wc = w[f.irrep] + c * r.copies * r.paths;
          for (int64_t o = 0; o < r.copies; ++o) {
            const T wv = wc[o * r.paths + f.start + p];
            for (int64_t m = 0; m < r.dim; ++m) {
              T* a = acc.data() + r.rows[o * r.dim + m] * TILE;
              const T* zz = z.data() + (f.offset + m) * TILE;
#pragma omp simd
              for (int64_t t = 0; t < n; ++t) a[t] += wv * zz[t];
            }
          }
        }
      });
    }
  });
}

template <typename T>
void backward_impl(const Program& prog, const at::Tensor& gy, const at::Tensor& x,
                   const std::vector<at::Tensor>& weights, const at::Tensor& cg_blocks, at::Tensor& gx,
                   std::vector<at::Tensor>& gw) {
  const int64_t B = x.size(0), V = x.size(2), C = x.size(1) / prog.d_in;
  const T* xp = x.data_ptr<T>();
  const T* gyp = gy.data_ptr<T>();
  T* gxp = gx.data_ptr<T>();
  const T* cg = cg_blocks.data_ptr<T>();
  std::vector<const T*> w;
  std::vector<T*> gwp;
  for (const auto& t : weights) w.push_back(t.data_ptr<T>());
  for (auto& t : gw) gwp.push_back(t.data_ptr<T>());
  // One task per channel: a channel's weight gradients are summed over the batch by one thread.
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> outer(prog.max_outer * TILE), z(prog.max_k * TILE), gz(prog.max_k * TILE),
        gacc(prog.d_in * TILE);
    for (int64_t c = begin; c < end; ++c) {
      std::vector<std::vector<double>> gsum;
      for (const Irrep& r : prog.irreps) gsum.emplace_back(r.copies * r.paths, 0.0);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t bc = b * C + c;
        const T* xb = xp + bc * prog.d_in * V;
        const T* gyb = gyp + bc * prog.d_out * V;
        over_tiles(prog, xb, V, cg, outer.data(), z.data(), gacc.data(), prog.d_in, gxp + bc * prog.d_in * V,
                   [&](const Group& g, const T* cgg, int64_t p, int64_t v0, auto count) {
          const int64_t n = count;
          std::fill(gz.begin(), gz.begin() + g.k * TILE, T(0));
          for (const Feed& f : g.feeds) {
            const Irrep& r = prog.irreps[f.irrep];
            const T* wc = w[f.irrep] + c * r.copies * r.paths;
            for (int64_t o = 0; o < r.copies; ++o) {
              const int64_t q = o * r.paths + f.start + p;
              const T wv = wc[q];
              T s = 0;
              for (int64_t m = 0; m < r.dim; ++m) {
                const T* gr = gyb + r.rows[o * r.dim + m] * V + v0;
                const T* zz = z.data() + (f.offset + m) * TILE;
                T* gzz = gz.data() + (f.offset + m) * TILE;
#pragma omp simd reduction(+ : s)
                for (int64_t t = 0; t < n; ++t) {
                  s += gr[t] * zz[t];
                  gzz[t] += wv * gr[t];
                }
              }
              gsum[f.irrep][q] += s;
            }
          }
          // The products' gradient (reusing outer), then the factors'.
          const int64_t dd = g.d1 * g.d2;
          for (int64_t ab = 0; ab < dd; ++ab)
            combine_rows(cgg + ab, dd, gz.data(), g.k, count, outer.data() + ab * TILE);
          for (int64_t a = 0; a < g.d1; ++a) {
            const int64_t la = g.left[p * g.d1 + a];
            const T* xl = xb + la * V + v0;
            T* gl = gacc.data() + la * TILE;
            for (int64_t bb = 0; bb < g.d2; ++bb) {
              const int64_t rb = g.right[p * g.d2 + bb];
              const T* xr = xb + rb * V + v0;
              T* gr = gacc.data() + rb * TILE;
              const T* go = outer.data() + (a * g.d2 + bb) * TILE;
              for (int64_t t = 0; t < n; ++t) {
                const T gt = go[t];
                gl[t] += gt * xr[t];
                gr[t] += gt * xl[t];
              }
            }
          }
        });
      }
      for (size_t r = 0; r < prog.irreps.size(); ++r) {
        const int64_t size = prog.irreps[r].copies * prog.irreps[r].paths;
        T* out = gwp[r] + c * size;
        for (int64_t q = 0; q < size; ++q) out[q] = static_cast<T>(gsum[r][q]);
      }
    }
  });
}

void check_inputs(const Program& prog, const at::Tensor& x, const std::vector<at::Tensor>& weights,
                  const at::Tensor& cg_blocks) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 3 && x.is_contiguous(), "x must be a contiguous (B, C D, V) CPU tensor");
  TORCH_CHECK(x.size(1) % prog.d_in == 0, "x has ", x.size(1), " channels, not a multiple of ", prog.d_in);
  const int64_t C = x.size(1) / prog.d_in;
  TORCH_CHECK(weights.size() == prog.irreps.size(), "expected ", prog.irreps.size(), " weight tensors");
  for (size_t r = 0; r < weights.size(); ++r) {
    const auto& t = weights[r];
    TORCH_CHECK(t.is_contiguous() && t.scalar_type() == x.scalar_type() && t.dim() == 3 && t.size(0) == C &&
                    t.size(1) == prog.irreps[r].copies && t.size(2) == prog.irreps[r].paths,
                "weight ", r, " must be a contiguous (", C, ", ", prog.irreps[r].copies, ", ", prog.irreps[r].paths,
                ") tensor of x's dtype");
  }
  TORCH_CHECK(cg_blocks.is_contiguous() && cg_blocks.scalar_type() == x.scalar_type(),
              "the Clebsch-Gordan blocks must be contiguous and of x's dtype");
}

at::Tensor cg_forward(const at::Tensor& x, const std::vector<at::Tensor>& weights, const at::Tensor& spec,
                      const at::Tensor& cg_blocks) {
  const Program prog = parse(spec);
  check_inputs(prog, x, weights, cg_blocks);
  auto y = at::empty({x.size(0), x.size(1) / prog.d_in * prog.d_out, x.size(2)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cg_forward", [&] { forward_impl<scalar_t>(prog, x, weights, cg_blocks, y); });
  return y;
}

std::vector<at::Tensor> cg_backward(const at::Tensor& gy, const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                    const at::Tensor& spec, const at::Tensor& cg_blocks) {
  const Program prog = parse(spec);
  check_inputs(prog, x, weights, cg_blocks);
  const auto gy_c = gy.contiguous();
  TORCH_CHECK(gy_c.size(0) == x.size(0) && gy_c.size(1) == x.size(1) / prog.d_in * prog.d_out &&
                  gy_c.size(2) == x.size(2) && gy_c.scalar_type() == x.scalar_type(),
              "the output gradient does not match the output");
  auto gx = at::empty_like(x);
  std::vector<at::Tensor> gw;
  for (const auto& t : weights) gw.push_back(at::empty_like(t));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cg_backward",
                             [&] { backward_impl<scalar_t>(prog, gy_c, x, weights, cg_blocks, gx, gw); });
  gw.insert(gw.begin(), gx);
  return gw;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &cg_forward, "Clebsch-Gordan tensor product, fused (x, weights, spec, blocks) -> y");
  m.def("backward", &cg_backward, "its gradients (gy, x, weights, spec, blocks) -> [gx, *gweights]");
}
