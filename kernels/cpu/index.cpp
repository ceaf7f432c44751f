#include "kernels/cpu/index.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels/cpu/parallel.h"

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

template <class T, class I>
void embedding_forward(const T* table, int64_t dim, const I* ids, int64_t batch, int64_t nfeat, T* out) {
  parallel_for(batch, kParallelGrain / (nfeat * dim > 0 ? nfeat * dim : 1), [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b)
      for (int64_t f = 0; f < nfeat; ++f)
        std::memcpy(out + (b * nfeat + f) * dim, table + static_cast<int64_t>(ids[b * nfeat + f]) * dim,
                    sizeof(T) * dim);
  });
}

template <class T, class I>
void embedding_backward(const T* grad_out, int64_t dim, const I* ids, int64_t batch, int64_t nfeat,
                        std::vector<int64_t>& uniq, std::vector<T>& rows) {
  const int64_t n = batch * nfeat;
  std::vector<int64_t> idx(n), inverse(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = static_cast<int64_t>(ids[i]);
  unique_rows(idx.data(), n, uniq, inverse.data());
  rows.assign(uniq.size() * dim, T(0));
  // grad_out is [batch*nfeat, dim] row for row with idx, so one scatter sums duplicates.
  scatter_add_rows(grad_out, inverse.data(), n, dim, rows.data());
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
template void embedding_backward<float, int32_t>(const float*, int64_t, const int32_t*, int64_t, int64_t,
                                                 std::vector<int64_t>&, std::vector<float>&);
template void embedding_backward<float, int64_t>(const float*, int64_t, const int64_t*, int64_t, int64_t,
                                                 std::vector<int64_t>&, std::vector<float>&);
template void embedding_backward<double, int32_t>(const double*, int64_t, const int32_t*, int64_t, int64_t,
                                                  std::vector<int64_t>&, std::vector<double>&);
template void embedding_backward<double, int64_t>(const double*, int64_t, const int64_t*, int64_t, int64_t,
                                                  std::vector<int64_t>&, std::vector<double>&);

}  // namespace rechub::kernels::cpu
