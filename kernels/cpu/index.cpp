#include "rechub/kernels/cpu/index.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>

#include "rechub/kernels/cpu/parallel.h"

namespace rechub::kernels::cpu {

// LSD radix sort of the positions by key (11-bit digits, only as many passes as the keys' range
// needs: 2 for a 176k-row arena), then one sweep. O(n) instead of an indirect comparison sort,
// which dominated the row-sparse embedding backward. Keys are biased by min(idx) so negative
// values sort correctly.
void unique_rows(const int64_t* idx, int64_t n, std::vector<int64_t>& uniq, int64_t* inverse) {
  uniq.clear();
  if (n <= 0) return;
  // Few ids (the radix passes' 2048-entry histograms would dominate) or positions beyond 32 bits:
  // comparison sort.
  if (n < 256 || n > int64_t{0xFFFFFFFF}) {
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return idx[a] < idx[b]; });
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = order[k];
      if (uniq.empty() || uniq.back() != idx[i]) uniq.push_back(idx[i]);
      inverse[i] = static_cast<int64_t>(uniq.size()) - 1;
    }
    return;
  }
  const int64_t lo = *std::min_element(idx, idx + n);
  uint64_t range = 0;
  for (int64_t i = 0; i < n; ++i) range = std::max(range, static_cast<uint64_t>(idx[i]) - static_cast<uint64_t>(lo));
  constexpr int kBits = 11;
  constexpr uint64_t kMask = (uint64_t{1} << kBits) - 1;
  std::vector<uint32_t> pos(n), tmp(n), count(size_t{1} << kBits);
  std::iota(pos.begin(), pos.end(), 0u);
  for (int shift = 0; shift < 64 && (range >> shift) != 0; shift += kBits) {
    std::fill(count.begin(), count.end(), 0u);
    auto digit = [&](uint32_t i) {
      return ((static_cast<uint64_t>(idx[i]) - static_cast<uint64_t>(lo)) >> shift) & kMask;
    };
    for (int64_t k = 0; k < n; ++k) ++count[digit(pos[k])];
    uint32_t sum = 0;
    for (auto& c : count) {
      const uint32_t t = c;
      c = sum;
      sum += t;
    }
    for (int64_t k = 0; k < n; ++k) tmp[count[digit(pos[k])]++] = pos[k];
    pos.swap(tmp);
  }
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = pos[k];
    if (uniq.empty() || uniq.back() != idx[i]) uniq.push_back(idx[i]);
    inverse[i] = static_cast<int64_t>(uniq.size()) - 1;
  }
}

template <class T>
void scatter_add_rows(const T* src, const int64_t* idx, int64_t n, int64_t d, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    T* o = out + idx[i] * d;
    const T* s = src + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) o[j] += s[j];
  }
}

template <class T>
void gather_rows(const T* src, const int64_t* idx, int64_t n, int64_t d, T* out) {
  parallel_for(n, kParallelGrain / (d > 0 ? d : 1), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) std::memcpy(out + i * d, src + idx[i] * d, sizeof(T) * d);
  });
}

// Row copies and sums of width W (0: the runtime width d). The embedding rows are short (16 floats
// is one 64-byte line), where a memcpy call per row costs more than the copy; a compile-time width
// makes each row a few vector instructions.
template <int64_t W, class T>
inline void copy_row(T* __restrict__ o, const T* __restrict__ s, int64_t d) {
  if constexpr (W > 0) d = W;
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) o[j] = s[j];
}
template <int64_t W, class T>
inline void add_row(T* __restrict__ o, const T* __restrict__ s, int64_t d) {
  if constexpr (W > 0) d = W;
#pragma omp simd
  for (int64_t j = 0; j < d; ++j) o[j] += s[j];
}
// f(std::integral_constant<int64_t, W>) with W = dim for the common embedding widths, else W = 0.
template <class F>
void with_width(int64_t dim, F f) {
  switch (dim) {
    case 8:
      return f(std::integral_constant<int64_t, 8>());
    case 16:
      return f(std::integral_constant<int64_t, 16>());
    case 32:
      return f(std::integral_constant<int64_t, 32>());
    case 64:
      return f(std::integral_constant<int64_t, 64>());
    default:
      return f(std::integral_constant<int64_t, 0>());
  }
}

template <class T, class I>
void embedding_forward(const T* table, int64_t dim, const I* ids, int64_t batch, int64_t nfeat, T* out) {
  // out is [batch * nfeat, dim] row for row with ids.
  with_width(dim, [&](auto w) {
    constexpr int64_t W = decltype(w)::value;
    parallel_for(batch * nfeat, kParallelGrain / (dim > 0 ? dim : 1), [&](int64_t lo, int64_t hi) {
      // The table rows are scattered (a cache miss each in a large table): ask for the row
      // kAhead ids ahead while copying this one.
      constexpr int64_t kAhead = 16;
      int64_t i = lo;
      for (; i + kAhead < hi; ++i) {
        __builtin_prefetch(table + static_cast<int64_t>(ids[i + kAhead]) * dim);
        copy_row<W>(out + i * dim, table + static_cast<int64_t>(ids[i]) * dim, dim);
      }
      for (; i < hi; ++i) copy_row<W>(out + i * dim, table + static_cast<int64_t>(ids[i]) * dim, dim);
    });
  });
}

namespace {

// The distinct rows of a backward that touches n of num_rows rows are marked in a bitmap over all
// rows, which then lists them in ascending order and gives each its rank (its position in that
// list) from a popcount: no sort, and everything but the gradient rows stays in L1/L2. Used while
// the map's scan (num_rows / 64 words) costs no more than the n ids; larger tables: radix sort.
bool use_row_bitmap(int64_t n, int64_t num_rows) {
  return num_rows <= std::max<int64_t>(64 * n, 1 << 16) && num_rows <= (int64_t{1} << 26) &&
         n <= std::numeric_limits<int32_t>::max();
}

// Per-thread scratch reused across calls, `seen` clear between calls: it has a bit per row the
// ids touch; before[w] = set bits of seen[0 .. w).
struct RowBitmap {
  std::vector<uint64_t> seen;
  std::vector<int32_t> before;
};

template <int64_t W, class T, class I>
void backward_bitmap(const T* grad_out, int64_t dim, const I* ids, int64_t n, int64_t num_rows,
                     const RowsAlloc<T>& alloc) {
  thread_local RowBitmap scratch;
  auto& [seen, before] = scratch;
  const int64_t words = (num_rows + 63) / 64;
  if (static_cast<int64_t>(seen.size()) < words) {
    seen.resize(words, 0);
    before.resize(words);
  }
  for (int64_t i = 0; i < n; ++i) {
    const auto id = static_cast<uint64_t>(ids[i]);
    seen[id >> 6] |= uint64_t{1} << (id & 63);
  }
  int32_t u = 0;
  for (int64_t w = 0; w < words; ++w) {
    before[w] = u;
    u += static_cast<int32_t>(std::popcount(seen[w]));
  }
  std::pair<int64_t*, T*> out;
  try {
    out = alloc(u);
  } catch (...) {
    std::fill(seen.begin(), seen.begin() + words, 0);
    throw;
  }
  auto [uniq, rows] = out;
  // grad_out is [n, dim] row for row with ids; each id's gradient is added to its row, in the
  // order of the ids (no first-seen branch: it mispredicted on a quarter of the ids). The row's
  // id is stored at its rank on the way, which costs less than listing the bitmap's set bits
  // (a loop whose length per word the branch predictor cannot guess).
  std::fill(rows, rows + static_cast<int64_t>(u) * dim, T(0));
  for (int64_t i = 0; i < n; ++i) {
    const auto id = static_cast<uint64_t>(ids[i]);
    const uint64_t w = id >> 6, bit = uint64_t{1} << (id & 63);
    const int64_t rank = before[w] + std::popcount(seen[w] & (bit - 1));
    uniq[rank] = static_cast<int64_t>(id);
    add_row<W>(rows + rank * dim, grad_out + i * dim, dim);
  }
  std::fill(seen.begin(), seen.begin() + words, 0);
}

template <class T, class I>
void backward_sorted(const T* grad_out, int64_t dim, const I* ids, int64_t n, const RowsAlloc<T>& alloc) {
  std::vector<int64_t> idx(n), inverse(n), uniq;
  for (int64_t i = 0; i < n; ++i) idx[i] = static_cast<int64_t>(ids[i]);
  unique_rows(idx.data(), n, uniq, inverse.data());
  const int64_t u = static_cast<int64_t>(uniq.size());
  auto [uq, rows] = alloc(u);
  std::copy(uniq.begin(), uniq.end(), uq);
  std::fill(rows, rows + u * dim, T(0));
  scatter_add_rows(grad_out, inverse.data(), n, dim, rows);
}

}  // namespace

template <class T, class I>
void embedding_backward(const T* grad_out, int64_t dim, const I* ids, int64_t batch, int64_t nfeat, int64_t num_rows,
                        const RowsAlloc<T>& alloc) {
  const int64_t n = batch * nfeat;
  if (!use_row_bitmap(n, num_rows)) return backward_sorted(grad_out, dim, ids, n, alloc);
  with_width(dim, [&](auto w) { backward_bitmap<decltype(w)::value>(grad_out, dim, ids, n, num_rows, alloc); });
}

void copy_block(const void* src, void* dst, int64_t outer, int64_t n_src, int64_t n_dst, int64_t at, int64_t inner,
                int64_t es, bool extract) {
  const auto* s = static_cast<const char*>(src);
  auto* d = static_cast<char*>(dst);
  const int64_t len = n_src * inner * es;
  for (int64_t o = 0; o < outer; ++o) {
    if (!extract)
      std::memcpy(d + (o * n_dst + at) * inner * es, s + o * n_src * inner * es, len);
    else  // src is the big one: take columns [at, at+n_dst) of [outer, n_src, inner]
      std::memcpy(d + o * n_dst * inner * es, s + (o * n_src + at) * inner * es, n_dst * inner * es);
  }
}

template void scatter_add_rows<float>(const float*, const int64_t*, int64_t, int64_t, float*);
template void scatter_add_rows<double>(const double*, const int64_t*, int64_t, int64_t, double*);
template void gather_rows<float>(const float*, const int64_t*, int64_t, int64_t, float*);
template void gather_rows<double>(const double*, const int64_t*, int64_t, int64_t, double*);
template void gather_rows<int32_t>(const int32_t*, const int64_t*, int64_t, int64_t, int32_t*);
template void gather_rows<int64_t>(const int64_t*, const int64_t*, int64_t, int64_t, int64_t*);
template void embedding_forward<float, int32_t>(const float*, int64_t, const int32_t*, int64_t, int64_t, float*);
template void embedding_forward<float, int64_t>(const float*, int64_t, const int64_t*, int64_t, int64_t, float*);
template void embedding_forward<double, int32_t>(const double*, int64_t, const int32_t*, int64_t, int64_t, double*);
template void embedding_forward<double, int64_t>(const double*, int64_t, const int64_t*, int64_t, int64_t, double*);
template void embedding_backward<float, int32_t>(const float*, int64_t, const int32_t*, int64_t, int64_t, int64_t,
                                                 const RowsAlloc<float>&);
template void embedding_backward<float, int64_t>(const float*, int64_t, const int64_t*, int64_t, int64_t, int64_t,
                                                 const RowsAlloc<float>&);
template void embedding_backward<double, int32_t>(const double*, int64_t, const int32_t*, int64_t, int64_t, int64_t,
                                                  const RowsAlloc<double>&);
template void embedding_backward<double, int64_t>(const double*, int64_t, const int64_t*, int64_t, int64_t, int64_t,
                                                  const RowsAlloc<double>&);

}  // namespace rechub::kernels::cpu
