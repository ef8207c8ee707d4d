// Absorbed MLA attention straight over the paged latent pool, for the CPU (compile=True engines).
//
// Each query row b attends the cached latents of its own context through its block table: fp32 slots
// are read where they lie in the pool (other dtypes converted into a small buffer; the next row's blocks
// prefetched meanwhile), never copied into a gathered [B, longest context, width] tensor (that copy, an
// index_select per layer, then read twice by two batched matmuls, was the largest cost of a compiled
// decode step at batch 256), and each row stops at its own position instead of the longest row's.
// Per row: scores q·latent for every slot and query, a softmax per query in fp32, then the
// probability-weighted sum of the slots' first kv_lora_rank numbers. Rows are split over torch's threads.
//
// Same mathematics as tinyseek.model.attention.attend_latents (fp32 scores, softmax, then the sum);
// only the order of the additions differs (16-float vectors).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "vector16.h"

namespace {

using tinyseek::hsum;
using tinyseek::hsum4;
using tinyseek::vec;
using tinyseek::W;

// Four queries' products with one slot's latent, summed over its vectors but not yet across lanes.
inline void dot4(const vec* q4, const vec* latent, int64_t chunks, vec* s) {
  for (int k = 0; k < 4; ++k) s[k] = q4[k * chunks] * latent[0];
  for (int64_t c = 1; c < chunks; ++c)
    for (int k = 0; k < 4; ++k) s[k] += q4[k * chunks + c] * latent[c];
}

// The probability-weighted latents of a row's queries, out[i] = sum over slots l of p[i][l] * latent[l]
// (its first `rank` numbers): blocks of QB queries x CB vectors, one accumulator each (at most 16), so
// that each slot feeds 16 independent FMAs; a query at a time with 4 vectors was bound by each
// accumulator's FMA latency.
template <int CB, int QB, typename scalar_t>
void weigh_block(const float* probs, int64_t max_len, const vec* const* slots, int64_t len, int64_t rank,
                 int64_t c0, scalar_t* out) {
  vec acc[QB][CB] = {};
  for (int64_t l = 0; l < len; ++l) {
    const vec* latent = slots[l] + c0;
    for (int q = 0; q < QB; ++q) {
      const float p = probs[q * max_len + l];
      for (int c = 0; c < CB; ++c) acc[q][c] += p * latent[c];
    }
  }
  for (int q = 0; q < QB; ++q)
    for (int c = 0; c < CB; ++c)
      for (int64_t j = 0; j < W && (c0 + c) * W + j < rank; ++j)
        out[q * rank + (c0 + c) * W + j] = static_cast<scalar_t>(acc[q][c][j]);
}

// Queries in blocks of QB, then the rest in blocks of QB / 2, ... 1 (4 queries of 2 vectors: one block of 4).
template <int CB, int QB, typename scalar_t>
void weigh_chunks(const float* probs, int64_t max_len, const vec* const* slots, int64_t len, int64_t n_queries,
                  int64_t rank, int64_t c0, scalar_t* out) {
  int64_t i = 0;
  for (; i + QB <= n_queries; i += QB)
    weigh_block<CB, QB>(probs + i * max_len, max_len, slots, len, rank, c0, out + i * rank);
  if constexpr (QB > 1)
    weigh_chunks<CB, QB / 2>(probs + i * max_len, max_len, slots, len, n_queries - i, rank, c0, out + i * rank);
}

template <typename scalar_t>
void weigh(const float* probs, int64_t max_len, const vec* const* slots, int64_t len, int64_t n_queries,
           int64_t rank, scalar_t* out) {
  const int64_t vectors = (rank + W - 1) / W;
  for (int64_t c0 = 0; c0 < vectors; c0 += 8) {
    const auto args = std::make_tuple(probs, max_len, slots, len, n_queries, rank, c0, out);
    switch (std::min<int64_t>(8, vectors - c0)) {  // QB * CB <= 16 accumulators
      case 1: std::apply(weigh_chunks<1, 16, scalar_t>, args); break;
      case 2: std::apply(weigh_chunks<2, 8, scalar_t>, args); break;
      case 3: std::apply(weigh_chunks<3, 4, scalar_t>, args); break;
      case 4: std::apply(weigh_chunks<4, 4, scalar_t>, args); break;
      case 5: std::apply(weigh_chunks<5, 2, scalar_t>, args); break;
      case 6: std::apply(weigh_chunks<6, 2, scalar_t>, args); break;
      case 7: std::apply(weigh_chunks<7, 2, scalar_t>, args); break;
      default: std::apply(weigh_chunks<8, 2, scalar_t>, args); break;
    }
  }
}

template <typename scalar_t>
void attend_rows(const scalar_t* q, const scalar_t* pool, int64_t pool_stride, const int64_t* table,
                 const int64_t* positions, scalar_t* out, int64_t rows, int64_t n_queries, int64_t dim,
                 int64_t steps, int64_t table_width, int64_t block_size, float scale, int64_t rank) {
  const int64_t heads = n_queries / steps;
  const int64_t max_len = table_width * block_size;
  const int64_t chunks = (dim + W - 1) / W;  // a slot's latent, padded with zeros to whole vectors
  const int64_t block_bytes = block_size * pool_stride * int64_t(sizeof(scalar_t));
  // fp32 slots of whole, aligned vectors are read in place (no copy into the row's buffer).
  const bool in_place = std::is_same_v<scalar_t, float> && dim % W == 0 &&
                        reinterpret_cast<uintptr_t>(pool) % sizeof(vec) == 0 &&
                        (pool_stride * int64_t(sizeof(scalar_t))) % int64_t(sizeof(vec)) == 0;
  auto context_of = [&](int64_t b) {
    int64_t len = 0;
    for (int64_t t = 0; t < steps; ++t) len = std::max(len, positions[b * steps + t] + 1);
    return std::min(len, max_len);
  };
  // A row's context lies in scattered blocks of a few KB, too short for the hardware prefetcher to
  // ramp up: the next row's blocks are requested while this row is computed.
  auto prefetch = [&](int64_t b) {
    const int64_t len = context_of(b);
    for (int64_t k = 0; k * block_size < len; ++k) {
      const char* start = reinterpret_cast<const char*>(pool + table[b * table_width + k] * block_size * pool_stride);
      for (int64_t c = 0; c < block_bytes; c += 64) __builtin_prefetch(start + c);
    }
  };
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    // The row's context converted to fp32 where it is not read in place, its queries, and the scores
    // then probabilities [query, slot].
    std::vector<vec> context(in_place ? 0 : max_len * chunks, vec{}), query(n_queries * chunks, vec{});
    std::vector<float> probs(n_queries * max_len);
    std::vector<int64_t> limit(n_queries);
    std::vector<const vec*> slots(max_len);  // each slot's latent: in the pool, or in `context`
    if (begin < end) prefetch(begin);
    for (int64_t b = begin; b < end; ++b) {
      if (b + 1 < end) prefetch(b + 1);
      const int64_t len = context_of(b);
      for (int64_t i = 0; i < n_queries; ++i) {  // query i = step t * heads + head: sees slots <= position
        limit[i] = std::min(positions[b * steps + i / heads] + 1, max_len);
        float* qi = reinterpret_cast<float*>(query.data() + i * chunks);
        for (int64_t d = 0; d < dim; ++d) qi[d] = static_cast<float>(q[(b * n_queries + i) * dim + d]);
      }
      const int64_t* blocks = table + b * table_width;
      // Block by block: a slot's block and offset without a division per slot (a 64-bit division
      // cost more than copying the slot's three vectors at rank 32). Reading fp32 slots in place
      // instead of copying them: 0.82-0.88 of the op's time (256 rows x 4 heads, 32 x 16, 1 x 8).
      for (int64_t start = 0; start < len; start += block_size) {
        const scalar_t* block = pool + blocks[start / block_size] * block_size * pool_stride;
        const int64_t stop = std::min(start + block_size, len);
        for (int64_t l = start; l < stop; ++l) {
          const scalar_t* slot = block + (l - start) * pool_stride;
          if (in_place) {
            slots[l] = reinterpret_cast<const vec*>(slot);
            continue;
          }
          vec* dst = context.data() + l * chunks;
          for (int64_t d = 0; d < dim; ++d) reinterpret_cast<float*>(dst)[d] = static_cast<float>(slot[d]);
          slots[l] = dst;
        }
      }
      int64_t i = 0;  // scores: four queries at a time over the slots, two slots at a time
      for (; i + 4 <= n_queries; i += 4) {
        const vec* q4 = query.data() + i * chunks;
        float* p4 = probs.data() + i * max_len;
        int64_t l = 0;
        for (; l + 2 <= len; l += 2) {  // two slots' sums in flight: each waits on FMA and shuffle latency
          vec s[4], t[4];
          dot4(q4, slots[l], chunks, s);
          dot4(q4, slots[l + 1], chunks, t);
          hsum4(s[0] * scale, s[1] * scale, s[2] * scale, s[3] * scale, p4 + l, max_len);
          hsum4(t[0] * scale, t[1] * scale, t[2] * scale, t[3] * scale, p4 + l + 1, max_len);
        }
        if (l < len) {
          vec s[4];
          dot4(q4, slots[l], chunks, s);
          hsum4(s[0] * scale, s[1] * scale, s[2] * scale, s[3] * scale, p4 + l, max_len);
        }
      }
      for (; i < n_queries; ++i) {
        const vec* qi = query.data() + i * chunks;
        for (int64_t l = 0; l < len; ++l) {
          const vec* latent = slots[l];
          vec s = qi[0] * latent[0];
          for (int64_t c = 1; c < chunks; ++c) s += qi[c] * latent[c];
          probs[i * max_len + l] = hsum(s) * scale;
        }
      }
      for (int64_t i = 0; i < n_queries; ++i) {  // softmax of each query over its own slots
        float* p = probs.data() + i * max_len;
        float top = p[0];
        for (int64_t l = 1; l < limit[i]; ++l) top = std::max(top, p[l]);
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int64_t l = 0; l < limit[i]; ++l) {
          p[l] = std::exp(p[l] - top);
          sum += p[l];
        }
        const float inv = 1.f / sum;
        for (int64_t l = 0; l < limit[i]; ++l) p[l] *= inv;
        for (int64_t l = limit[i]; l < len; ++l) p[l] = 0.f;  // so that every query sums over the row's len
      }
      weigh(probs.data(), max_len, slots.data(), len, n_queries, rank, out + b * n_queries * rank);
    }
  });
}

// The smallest and largest of a long tensor's numbers (block ids, slots and positions the kernel uses as
// offsets), by a loop: two reductions and their .item() cost microseconds a call, a step calls it per layer.
std::pair<int64_t, int64_t> bounds(const torch::Tensor& t) {
  const int64_t* data = t.data_ptr<int64_t>();
  const auto [lo, hi] = std::minmax_element(data, data + t.numel());
  return {*lo, *hi};
}

}  // namespace

// q [B, T*H, R + r], pool [slots, R + r] (one layer, rows contiguous), table [B, nb] block ids,
// positions [B, T] -> [B, T*H, R].
torch::Tensor paged_latent_attention(torch::Tensor q, const torch::Tensor& pool, torch::Tensor table,
                                     torch::Tensor positions, int64_t block_size, double scale, int64_t rank) {
  TORCH_CHECK(q.dim() == 3 && pool.dim() == 2 && table.dim() == 2 && positions.dim() == 2,
              "paged_latent_attention: expected q [B, T*H, D], pool [S, D], table [B, nb], positions [B, T]");
  TORCH_CHECK(q.scalar_type() == pool.scalar_type(), "paged_latent_attention: q and pool differ in dtype");
  TORCH_CHECK(pool.stride(1) == 1 && q.size(2) == pool.size(1) && rank <= pool.size(1),
              "paged_latent_attention: pool rows must be contiguous and as wide as q's");
  TORCH_CHECK(q.size(1) % positions.size(1) == 0, "paged_latent_attention: T*H not a multiple of T");
  q = q.contiguous();
  table = table.to(torch::kLong).contiguous();
  positions = positions.to(torch::kLong).contiguous();
  const int64_t num_blocks = pool.size(0) / block_size;
  if (table.numel() > 0) {
    const auto [lo, hi] = bounds(table);
    TORCH_CHECK(lo >= 0 && hi < num_blocks, "paged_latent_attention: block ids must lie in [0, ", num_blocks, ")");
  }
  TORCH_CHECK(positions.numel() == 0 || bounds(positions).first >= 0, "paged_latent_attention: positions must be >= 0");
  auto out = torch::empty({q.size(0), q.size(1), rank}, q.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::BFloat16, at::ScalarType::Half, q.scalar_type(), "paged_latent_attention", [&] {
    attend_rows<scalar_t>(q.data_ptr<scalar_t>(), pool.data_ptr<scalar_t>(), pool.stride(0),
                          table.data_ptr<int64_t>(), positions.data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
                          q.size(0), q.size(1), q.size(2), positions.size(1), table.size(1), block_size,
                          static_cast<float>(scale), rank);
  });
  return out;
}

// tinyseek::write_attend_paged (schema and Python reference: latent_cache.py): write the step's
// latents into layer `layer` of the pool, then attend over the pool in place. `reads` is the packed
// [G, (start, stop, width) x G, table [B, nb] row-major]; the groups are not needed here, since each
// row stops at its own position.
torch::Tensor write_attend_paged(torch::Tensor latents, int64_t layer, const torch::Tensor& write_slots,
                                 const torch::Tensor& new_latents, const torch::Tensor& reads, int64_t block_size,
                                 const torch::Tensor& q, const torch::Tensor& positions, double softmax_scale,
                                 int64_t kv_lora_rank) {
  auto pool = latents.select(0, layer);
  TORCH_CHECK(pool.stride(1) == 1, "write_attend_paged: pool rows must be contiguous");
  TORCH_CHECK(reads.scalar_type() == torch::kLong && reads.dim() == 1 && reads.is_contiguous() && reads.numel() > 0,
              "write_attend_paged: reads must be a non-empty contiguous 1-D long tensor (bind_tables' packing)");
  // The step's latents copied row by row into their slots (index_copy_'s checks and dispatch cost more
  // than the copy at small batches).
  const auto rows = new_latents.reshape({-1, pool.size(1)}).to(pool.scalar_type()).contiguous();
  const auto slots = write_slots.to(torch::kLong).contiguous();
  TORCH_CHECK(slots.numel() == rows.size(0), "write_attend_paged: ", slots.numel(), " slots for ", rows.size(0),
              " latents");
  if (slots.numel() > 0) {
    const auto [lo, hi] = bounds(slots);
    TORCH_CHECK(lo >= 0 && hi < pool.size(0), "write_attend_paged: slots must lie in [0, ", pool.size(0), ")");
  }
  const int64_t row_bytes = pool.size(1) * pool.element_size();
  char* dst = static_cast<char*>(pool.data_ptr());
  const char* src = static_cast<const char*>(rows.data_ptr());
  const int64_t* slot = slots.data_ptr<int64_t>();
  for (int64_t i = 0; i < slots.numel(); ++i)
    std::memcpy(dst + slot[i] * pool.stride(0) * pool.element_size(), src + i * row_bytes, row_bytes);
  const int64_t header = 1 + 3 * reads.data_ptr<int64_t>()[0];
  const auto table = reads.slice(0, header).view({q.size(0), -1});
  return paged_latent_attention(q.to(pool.scalar_type()), pool, table, positions, block_size, softmax_scale,
                                kv_lora_rank);
}

// The schemas are defined in Python (cpu_kernels.py, latent_cache.py), with their shape functions.
TORCH_LIBRARY_IMPL(tinyseek, CPU, m) {
  m.impl("paged_latent_attention", &paged_latent_attention);
  m.impl("write_attend_paged", &write_attend_paged);
}
