// Greedy decoding's argmax over each row of the logits, for the CPU (compiled engines' sampler).
//
// at::max(dim) walks a row with its generic reduction (values and indices, NaN propagation): 32 rows of
// a 32,000-word vocabulary took 1.1-1.7 ms, ~3% of a compiled `small` decode step at batch 32. Here one
// pass keeps, per vector lane, the largest value and where it first occurs (a strict `>`), then the
// lanes are merged: the largest value, at the smallest index among the lanes that hold it. That is
// at::max's rule (the first maximum), so tokens are the same. A row holding a NaN, whose order this
// pass cannot see, takes at::max (which returns the NaN's index).
#include <torch/extension.h>

#include <cstdint>
#include <cstring>

#include "vector16.h"

namespace {

using tinyseek::load_unaligned;
using tinyseek::vec;
using tinyseek::W;

typedef int32_t ivec __attribute__((vector_size(64)));

// NaN tests on the bits: the kernels build with -ffast-math, under which `x != x` is folded to false.
constexpr int32_t kAbs = 0x7fffffff, kInf = 0x7f800000;
inline ivec is_nan(vec v) { return (reinterpret_cast<const ivec&>(v) & kAbs) > kInf; }
inline bool is_nan(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & kAbs) > kInf;
}

// The first index of the row's maximum, or -1 if the row holds a NaN.
int64_t row_argmax(const float* p, int64_t n) {
  float best = p[0];
  int64_t where = 0;
  int64_t k = 0;
  bool nan = false;
  if (n >= W) {
    vec top = load_unaligned(p);
    ivec index = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    ivec at = index;
    ivec unordered = is_nan(top);
    for (k = W; k + W <= n; k += W) {
      const vec v = load_unaligned(p + k);
      index += W;
      const ivec greater = v > top;
      top = greater ? v : top;
      at = greater ? index : at;
      unordered |= is_nan(v);
    }
    for (int j = 0; j < W; ++j) nan |= unordered[j] != 0;
    best = top[0];
    where = at[0];
    for (int j = 1; j < W; ++j)
      if (top[j] > best || (top[j] == best && at[j] < where)) best = top[j], where = at[j];
  }
  for (; k < n; ++k) {  // the tail (or a row shorter than a vector)
    nan |= is_nan(p[k]);
    if (p[k] > best) best = p[k], where = k;
  }
  return nan ? -1 : where;
}

at::Tensor greedy_argmax(const at::Tensor& logits) {
  TORCH_CHECK(logits.dim() == 2, "greedy_argmax: expected logits [B, V], got ", logits.sizes());
  TORCH_CHECK(logits.size(1) > 0, "greedy_argmax: expected a non-empty vocabulary");
  if (logits.scalar_type() != at::kFloat || logits.stride(1) != 1)
    return std::get<1>(logits.max(1));
  at::Tensor out = at::empty({logits.size(0)}, logits.options().dtype(at::kLong));
  int64_t* token = out.data_ptr<int64_t>();
  const float* base = logits.data_ptr<float>();
  for (int64_t r = 0; r < logits.size(0); ++r) {
    token[r] = row_argmax(base + r * logits.stride(0), logits.size(1));
    if (token[r] < 0) token[r] = std::get<1>(logits[r].max(0)).item<int64_t>();
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyseek, CPU, m) { m.impl("greedy_argmax", greedy_argmax); }
