// x @ weightᵀ for the few rows of a decode step, on the CPU (compile=True engines).
//
// A decode step multiplies a handful of rows (the batch, or an expert's share of it) by weights that
// come from memory or L3, not from a warm cache. With fp32 weights of [out, in] and 8-32 rows, BLAS
// reached 3-6 GB/s there (it packs the weights first and its loads do not overlap the arithmetic),
// against 12-14 GB/s for one row. This kernel reads each weight row once, in place, in one of three
// ways, each with the weights requested ahead of use so that memory and arithmetic overlap:
// - one row, as dot products with 8 weight rows at a time, each weight row requested two blocks
//   (16 rows) ahead: 14.9-16.3 GB/s from memory where BLAS read row-major weights at 12.4-13.9 (and
//   input-major ones, its faster layout for one row, at 15.4-16.0);
// - 2 to 27 rows, as dot products of 4 weight rows with 4 input rows at a time (16 vector
//   accumulators, the input rows in L1/L2), the rows two tiles ahead requested over the tile's
//   iterations: 1.3-1.7x BLAS for 8-16 rows over 94 MB of distinct fp32 weights;
// - from 28 rows, the input transposed ([in, rows], 16 rows a vector) and each weight broadcast
//   against it, for 12, 8 or 6 weight rows at once (2, 3 or 4 vectors of rows): no horizontal sums
//   (the dot products' cost at short inputs), and the next rows - one contiguous block - requested
//   in one linear sweep as these are computed. 32 rows over 64 MB of distinct weights from memory:
//   124-131 against 95-106 GFLOP/s for the dot products (at 8-16 rows, where a half-empty vector
//   wastes work, it is slower); 64 rows: 122-152 against BLAS's 86-117 on the same row-major weights.
// Larger inputs, other dtypes and shapes that are not whole vectors (in % 16, out % 4) go to at::mm.
//
// decode_grouped_linear does the same per expert for rows sorted by expert (the MoE's routed
// experts), with weights [experts, out, in] and offs[e] the end of expert e's rows.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>

#include "vector16.h"

namespace {

using tinyseek::hsum4;
using tinyseek::load_unaligned;
using tinyseek::vec;
using tinyseek::W;

constexpr int64_t kMaxRows = 64;        // above this BLAS (its packed weights reused over more rows)
constexpr int64_t kBroadcastRows = 28;  // from here on the broadcast form (below it wastes vector lanes)
constexpr int64_t kPrefetchTiles = 2;   // how far ahead (in 4-row weight tiles) rows are requested
constexpr int64_t kOneRowAhead = 16;    // one row: how many weight rows ahead each row is requested

// Cache lines still to request, handed from tile to tile: `per_step` of them at each k step.
struct Prefetch {
  const char* next;
  const char* end;
  int64_t per_step;
};

// y[r, 0..3] = x[r] . w[0..3] for ROWS input rows (row stride k_dim) and 4 weight rows.
template <int ROWS>
inline void tile(const float* x, const float* w, int64_t k_dim, float* y, int64_t n_dim, Prefetch& ahead) {
  vec acc[ROWS][4];
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = vec{};
  for (int64_t k = 0; k < k_dim; k += W) {
    for (int64_t p = 0; p < ahead.per_step && ahead.next < ahead.end; ++p, ahead.next += 64)
      __builtin_prefetch(ahead.next, 0, 1);
    const vec w0 = load_unaligned(w + k), w1 = load_unaligned(w + k_dim + k),
              w2 = load_unaligned(w + 2 * k_dim + k), w3 = load_unaligned(w + 3 * k_dim + k);
    for (int r = 0; r < ROWS; ++r) {
      const vec xr = load_unaligned(x + r * k_dim + k);
      acc[r][0] += xr * w0;
      acc[r][1] += xr * w1;
      acc[r][2] += xr * w2;
      acc[r][3] += xr * w3;
    }
  }
  for (int r = 0; r < ROWS; ++r) hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], y + r * n_dim, 1);
}

// Output columns [n_begin, n_end) (multiples of 4) of y [m, n_dim] = x [m, k_dim] @ w [n_dim, k_dim]ᵀ.
void linear_columns(const float* x, const float* w, float* y, int64_t m, int64_t k_dim, int64_t n_dim,
                    int64_t n_begin, int64_t n_end) {
  const int64_t tiles = m / 4 + m % 4;
  const int64_t lines = 4 * k_dim * int64_t(sizeof(float)) / 64;  // one weight tile's cache lines
  const int64_t steps = tiles * (k_dim / W);
  for (int64_t n = n_begin; n < n_end; n += 4) {
    const int64_t ahead_row = n + 4 * kPrefetchTiles;
    const char* start = reinterpret_cast<const char*>(w + ahead_row * k_dim);
    Prefetch ahead{start, ahead_row < n_end ? start + lines * 64 : start, (lines + steps - 1) / steps};
    const float* wn = w + n * k_dim;
    int64_t r = 0;
    for (; r + 4 <= m; r += 4) tile<4>(x + r * k_dim, wn, k_dim, y + r * n_dim + n, n_dim, ahead);
    for (; r < m; ++r) tile<1>(x + r * k_dim, wn, k_dim, y + r * n_dim + n, n_dim, ahead);
  }
}

// y[r, 0..C) = x[r] . w[0..C) for every input row r, from xt = x transposed and zero-padded to
// [k_dim, V * W]: each weight broadcast against V vectors of 16 rows; the C weight rows that follow
// (contiguous) are requested in one linear sweep meanwhile.
template <int C, int V>
inline void broadcast_block(const float* xt, const float* w, int64_t k_dim, float* y, int64_t m,
                            int64_t n_dim) {
  vec acc[C][V];
  for (int c = 0; c < C; ++c)
    for (int v = 0; v < V; ++v) acc[c][v] = vec{};
  const float* next = w + C * k_dim;
  for (int64_t k = 0; k < k_dim; ++k) {
    __builtin_prefetch(next + k * C, 0, 1);
    vec xv[V];
    for (int v = 0; v < V; ++v) xv[v] = *reinterpret_cast<const vec*>(xt + (k * V + v) * W);
    for (int c = 0; c < C; ++c) {
      const vec b = vec{} + w[c * k_dim + k];
      for (int v = 0; v < V; ++v) acc[c][v] += b * xv[v];
    }
  }
  alignas(64) float out[C][V * W];
  for (int c = 0; c < C; ++c)
    for (int v = 0; v < V; ++v) *reinterpret_cast<vec*>(&out[c][v * W]) = acc[c][v];
  for (int64_t r = 0; r < m; ++r)
    for (int c = 0; c < C; ++c) y[r * n_dim + c] = out[c][r];
}

template <int C, int V>
void broadcast_columns(const float* xt, const float* w, float* y, int64_t m, int64_t k_dim, int64_t n_dim,
                       int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  for (; n + C <= n_end; n += C) broadcast_block<C, V>(xt, w + n * k_dim, k_dim, y + n, m, n_dim);
  for (; n < n_end; ++n) broadcast_block<1, V>(xt, w + n * k_dim, k_dim, y + n, m, n_dim);
}

// y[n_begin, n_end) = x . w[n] for one input row x: 8 weight rows at a time, each requested
// kOneRowAhead rows ahead, one cache line per row and step, as its own lines are read.
void one_row_columns(const float* x, const float* w, float* y, int64_t k_dim, int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  for (; n + 8 <= n_end; n += 8) {
    const float* wn = w + n * k_dim;
    vec acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = vec{};
    for (int64_t k = 0; k < k_dim; k += W) {
      const vec xv = load_unaligned(x + k);
      for (int j = 0; j < 8; ++j) {
        __builtin_prefetch(wn + (j + kOneRowAhead) * k_dim + k, 0, 1);
        acc[j] += load_unaligned(wn + j * k_dim + k) * xv;
      }
    }
    hsum4(acc[0], acc[1], acc[2], acc[3], y + n, 1);
    hsum4(acc[4], acc[5], acc[6], acc[7], y + n + 4, 1);
  }
  // out % 4 == 0, so 4 rows may be left: the dot-product form's tile (its output stride unused for one row)
  if (n < n_end) linear_columns(x, w, y, 1, k_dim, n_end, n, n_end);
}

void linear_rows(const float* x, const float* w, float* y, int64_t m, int64_t k_dim, int64_t n_dim) {
  if (m == 1) {
    at::parallel_for(0, (n_dim + 7) / 8, 16, [&](int64_t begin, int64_t end) {
      one_row_columns(x, w, y, k_dim, begin * 8, std::min(end * 8, n_dim));
    });
    return;
  }
  if (m < kBroadcastRows) {
    at::parallel_for(0, n_dim / 4, 16, [&](int64_t begin, int64_t end) {
      linear_columns(x, w, y, m, k_dim, n_dim, begin * 4, end * 4);
    });
    return;
  }
  const int64_t v = (m + W - 1) / W;  // 2 to 4 (m <= kMaxRows)
  at::Tensor xt_buffer = at::empty({k_dim, v * W}, at::kFloat);
  float* xt = xt_buffer.data_ptr<float>();
  for (int64_t k = 0; k < k_dim; ++k) {
    for (int64_t r = 0; r < m; ++r) xt[k * v * W + r] = x[r * k_dim + k];
    for (int64_t r = m; r < v * W; ++r) xt[k * v * W + r] = 0.f;
  }
  const int64_t c = v == 2 ? 12 : v == 3 ? 8 : 6;  // weight rows a block: C * V accumulators of 32 registers
  at::parallel_for(0, (n_dim + c - 1) / c, 8, [&](int64_t begin, int64_t end) {
    const int64_t n_begin = begin * c, n_end = std::min(end * c, n_dim);
    if (v == 2) broadcast_columns<12, 2>(xt, w, y, m, k_dim, n_dim, n_begin, n_end);
    else if (v == 3) broadcast_columns<8, 3>(xt, w, y, m, k_dim, n_dim, n_begin, n_end);
    else broadcast_columns<6, 4>(xt, w, y, m, k_dim, n_dim, n_begin, n_end);
  });
}

bool kernel_fits(const at::Tensor& x, const at::Tensor& weight) {
  return x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat && weight.is_contiguous() &&
         x.size(1) % W == 0 && weight.size(-2) % 4 == 0;
}

void check_shapes(const at::Tensor& x, const at::Tensor& weight, int64_t weight_dims) {
  TORCH_CHECK(x.dim() == 2, "x: expected [rows, in], got ", x.sizes());
  TORCH_CHECK(weight.dim() == weight_dims && weight.size(-1) == x.size(1),
              "weight: expected ", weight_dims == 2 ? "[out, in]" : "[experts, out, in]", " with in = ",
              x.size(1), ", got ", weight.sizes());
  TORCH_CHECK(x.scalar_type() == weight.scalar_type(), "x and weight: expected one dtype, got ",
              x.scalar_type(), " and ", weight.scalar_type());
}

at::Tensor decode_linear(const at::Tensor& x_in, const at::Tensor& weight) {
  check_shapes(x_in, weight, 2);
  if (x_in.size(0) == 0 || x_in.size(0) > kMaxRows || !kernel_fits(x_in, weight)) return at::mm(x_in, weight.t());
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty({x.size(0), weight.size(0)}, x.options());
  linear_rows(x.data_ptr<float>(), weight.data_ptr<float>(), y.data_ptr<float>(), x.size(0), x.size(1),
              weight.size(0));
  return y;
}

at::Tensor decode_grouped_linear(const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& offs) {
  check_shapes(x_in, weight, 3);
  TORCH_CHECK(offs.dim() == 1 && offs.size(0) == weight.size(0), "offs: expected [", weight.size(0),
              "] (one end per expert), got ", offs.sizes());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor ends = offs.to(at::kLong).contiguous();
  const int64_t* end = ends.data_ptr<int64_t>();
  const int64_t rows = x.size(0), k_dim = x.size(1), n_dim = weight.size(1);
  at::Tensor y = at::empty({rows, n_dim}, x.options());
  const bool fits = kernel_fits(x, weight);
  TORCH_CHECK(weight.size(0) == 0 || end[weight.size(0) - 1] == rows, "offs: expected the last end to be ",
              rows, " (every row in a group), got ", weight.size(0) ? end[weight.size(0) - 1] : 0);
  int64_t begin = 0;
  for (int64_t e = 0; e < weight.size(0); ++e) {
    TORCH_CHECK(end[e] >= begin && end[e] <= rows, "offs: expected non-decreasing ends within [0, ", rows,
                "], got ", end[e], " for expert ", e);
    const int64_t m = end[e] - begin;
    if (m > kMaxRows || !fits) {
      if (m > 0) {
        at::Tensor rows_out = y.narrow(0, begin, m);
        at::mm_out(rows_out, x.narrow(0, begin, m), weight[e].t());
      }
    } else if (m > 0) {
      linear_rows(x.data_ptr<float>() + begin * k_dim, weight.data_ptr<float>() + e * n_dim * k_dim,
                  y.data_ptr<float>() + begin * n_dim, m, k_dim, n_dim);
    }
    begin = end[e];
  }
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyseek, CPU, m) {
  m.impl("decode_linear", decode_linear);
  m.impl("decode_grouped_linear", decode_grouped_linear);
}
