// Causal softmax attention, forward and backward, for compiled training on a CPU (cpu_attention.py).
//
// ATen's CPU flash kernel, at MLA's head dims (queries and keys 48 wide, values 32, padded to 48 for
// it) and a few hundred tokens, computes every query against every key of its key block and masks the
// future afterwards. Here each (sequence, head) runs its queries in blocks of 64 rows, and a block's
// scores cover only the keys up to its last row: a causal row of S keys costs ~5/8 of the full
// products at S = 256, values keep their own width. A block holds its rows' whole scores (64 × S
// floats), so the softmax is exact in one pass (no running maximum), and the backward recomputes the
// probabilities from the saved log-sum-exp, as flash attention does.
//
// The products are BLAS's (`sgemm_`, which torch's BLAS exports); inputs are [B, S, H, D] with their
// last dimension contiguous (any other strides, so the model's views need no copy); fp32 only.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);

namespace {

constexpr int64_t ROWS = 64;  // queries per block: their scores (64 × S floats) stay in the L2 cache

// Row-major C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C, as column-major BLAS's Cᵀ = op(B)ᵀ op(A)ᵀ.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const char op_b = trans_b ? 'T' : 'N', op_a = trans_a ? 'T' : 'N';
  const int M = n, N = m, K = k, LDB = ldb, LDA = lda, LDC = ldc;
  sgemm_(&op_b, &op_a, &M, &N, &K, &alpha, b, &LDB, a, &LDA, &beta, c, &LDC);
}

// One (sequence, head) of a [B, S, H, D] tensor: its first row and the distance between rows.
struct Rows {
  float* data;
  int64_t ld;
};

Rows rows(const torch::Tensor& t, int64_t b, int64_t h) {
  return {t.data_ptr<float>() + b * t.stride(0) + h * t.stride(2), t.stride(1)};
}

torch::Tensor checked(const torch::Tensor& t, const char* name, int64_t B, int64_t S, int64_t H) {
  TORCH_CHECK(t.dim() == 4 && t.size(0) == B && t.size(1) == S && t.size(2) == H,
              "causal_attention: expected ", name, " [", B, ", ", S, ", ", H, ", D], got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == torch::kFloat32 && t.device().is_cpu(),
              "causal_attention: expected fp32 CPU tensors, got ", name, " ", t.scalar_type(), " on ", t.device());
  return t.stride(3) == 1 ? t : t.contiguous();
}

// Scores of query rows [r0, r0 + m) over keys [0, r0 + m), scaled: s[i, j], row length r0 + m.
void scores(Rows q, Rows k, int64_t r0, int64_t m, int64_t d, float scale, float* s) {
  gemm(false, true, m, r0 + m, d, scale, q.data + r0 * q.ld, q.ld, k.data, k.ld, 0.f, s, r0 + m);
}

std::tuple<torch::Tensor, torch::Tensor> causal_attention(const torch::Tensor& q_in, const torch::Tensor& k_in,
                                                          const torch::Tensor& v_in, double softmax_scale) {
  const int64_t B = q_in.size(0), S = q_in.size(1), H = q_in.size(2), D = q_in.size(3);
  const auto q = checked(q_in, "q", B, S, H), k = checked(k_in, "k", B, S, H), v = checked(v_in, "v", B, S, H);
  TORCH_CHECK(k.size(3) == D, "causal_attention: q and k differ in width: ", D, " and ", k.size(3));
  const int64_t Dv = v.size(3);
  auto out = torch::empty({B, S, H, Dv}, q.options());
  auto lse = torch::empty({B, H, S}, q.options());  // each query's log-sum-exp, for the backward
  const float scale = softmax_scale;
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> s(ROWS * S);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const Rows qr = rows(q, b, h), kr = rows(k, b, h), vr = rows(v, b, h), o = rows(out, b, h);
      float* l = lse.data_ptr<float>() + bh * S;
      for (int64_t r0 = 0; r0 < S; r0 += ROWS) {
        const int64_t m = std::min(ROWS, S - r0), n = r0 + m;
        scores(qr, kr, r0, m, D, scale, s.data());
        for (int64_t i = 0; i < m; ++i) {  // softmax over the keys up to the query's own position
          float* p = s.data() + i * n;
          const int64_t seen = r0 + i + 1;
          float top = p[0];
          for (int64_t j = 1; j < seen; ++j) top = std::max(top, p[j]);
          float sum = 0.f;
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < seen; ++j) {
            p[j] = std::exp(p[j] - top);
            sum += p[j];
          }
          const float inv = 1.f / sum;
#pragma omp simd
          for (int64_t j = 0; j < seen; ++j) p[j] *= inv;
          std::fill(p + seen, p + n, 0.f);
          l[r0 + i] = top + std::log(sum);
        }
        gemm(false, false, m, Dv, n, 1.f, s.data(), n, vr.data, vr.ld, 0.f, o.data + r0 * o.ld, o.ld);
      }
    }
  });
  return {out, lse};
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> causal_attention_backward(
    const torch::Tensor& grad_in, const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v_in,
    const torch::Tensor& out_in, const torch::Tensor& lse, double softmax_scale) {
  const int64_t B = q_in.size(0), S = q_in.size(1), H = q_in.size(2), D = q_in.size(3);
  const auto q = checked(q_in, "q", B, S, H), k = checked(k_in, "k", B, S, H), v = checked(v_in, "v", B, S, H);
  const auto grad = checked(grad_in, "grad", B, S, H), out = checked(out_in, "out", B, S, H);
  TORCH_CHECK(lse.is_contiguous() && lse.numel() == B * H * S, "causal_attention_backward: bad lse ", lse.sizes());
  const int64_t Dv = v.size(3);
  auto dq = torch::empty({B, S, H, D}, q.options());
  auto dk = torch::zeros({B, S, H, D}, q.options());
  auto dv = torch::zeros({B, S, H, Dv}, q.options());
  const float scale = softmax_scale;
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> p(ROWS * S), ds(ROWS * S), delta(S);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const Rows qr = rows(q, b, h), kr = rows(k, b, h), vr = rows(v, b, h), o = rows(out, b, h);
      const Rows g = rows(grad, b, h), dqr = rows(dq, b, h), dkr = rows(dk, b, h), dvr = rows(dv, b, h);
      const float* l = lse.data_ptr<float>() + bh * S;
      for (int64_t i = 0; i < S; ++i) {  // delta_i = dO_i · O_i = Σ_j P_ij dP_ij
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int64_t c = 0; c < Dv; ++c) sum += g.data[i * g.ld + c] * o.data[i * o.ld + c];
        delta[i] = sum;
      }
      for (int64_t r0 = 0; r0 < S; r0 += ROWS) {
        const int64_t m = std::min(ROWS, S - r0), n = r0 + m;
        scores(qr, kr, r0, m, D, scale, p.data());
        for (int64_t i = 0; i < m; ++i) {  // P again, from the saved log-sum-exp
          float* pi = p.data() + i * n;
          const int64_t seen = r0 + i + 1;
          const float li = l[r0 + i];
#pragma omp simd
          for (int64_t j = 0; j < seen; ++j) pi[j] = std::exp(pi[j] - li);
          std::fill(pi + seen, pi + n, 0.f);
        }
        const float* g0 = g.data + r0 * g.ld;
        gemm(true, false, n, Dv, m, 1.f, p.data(), n, g0, g.ld, 1.f, dvr.data, dvr.ld);  // dV += Pᵀ dO
        gemm(false, true, m, n, Dv, 1.f, g0, g.ld, vr.data, vr.ld, 0.f, ds.data(), n);   // dP = dO Vᵀ
        for (int64_t i = 0; i < m; ++i) {  // dS = P ∘ (dP − delta) · scale
          float* dsi = ds.data() + i * n;
          const float* pi = p.data() + i * n;
          const float di = delta[r0 + i];
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) dsi[j] = pi[j] * (dsi[j] - di) * scale;
        }
        gemm(false, false, m, D, n, 1.f, ds.data(), n, kr.data, kr.ld, 0.f, dqr.data + r0 * dqr.ld, dqr.ld);  // dQ
        gemm(true, false, n, D, m, 1.f, ds.data(), n, qr.data + r0 * qr.ld, qr.ld, 1.f, dkr.data, dkr.ld);  // dK +=
      }
    }
  });
  return {dq, dk, dv};
}

}  // namespace

// The schemas are defined in Python (cpu_attention.py), with their shape functions and autograd.
TORCH_LIBRARY_IMPL(tinyseek, CPU, m) {
  m.impl("causal_attention", &causal_attention);
  m.impl("causal_attention_backward", &causal_attention_backward);
}
