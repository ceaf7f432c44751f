#pragma once
// Row gathers and scatters along dim 0, the embedding lookup over one arena, and the
// unique-row reduction behind row-sparse gradients.
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace rechub::kernels::cpu {

// uniq = sorted distinct values of idx; inverse[i] = position of idx[i] in uniq.
void unique_rows(const int64_t* idx, int64_t n, std::vector<int64_t>& uniq, int64_t* inverse);
// out[idx[i], :] += src[i, :] (rows of width d); sequential, so the order of sums is fixed.
template <class T>
void scatter_add_rows(const T* src, const int64_t* idx, int64_t n, int64_t d, T* out);
// out[i, :] = src[idx[i], :]
template <class T>
void gather_rows(const T* src, const int64_t* idx, int64_t n, int64_t d, T* out);
// out[b, f*D:(f+1)*D] = table[ids[b, f], :] for ids of type I (int32_t or int64_t).
template <class T, class I>
void embedding_forward(const T* table, int64_t dim, const I* ids, int64_t batch, int64_t nfeat, T* out);
// Row-sparse backward. Calls alloc(u) once with the number u of distinct rows in ids (all in
// [0, num_rows)) and writes, at the pointers it returns, the rows in ascending order (uniq[u]) and
// for each the sum of its gradient rows (rows[u * dim]), summed in the order the ids appear.
template <class T>
using RowsAlloc = std::function<std::pair<int64_t*, T*>(int64_t u)>;
template <class T, class I>
void embedding_backward(const T* grad_out, int64_t dim, const I* ids, int64_t batch, int64_t nfeat, int64_t num_rows,
                        const RowsAlloc<T>& alloc);
// Copies a [outer, n_src, inner] block into columns [at, at+n_src) of a [outer, n_dst, inner] tensor
// (or the reverse with `extract`): the kernel behind concat, split and narrow on inner dims.
void copy_block(const void* src, void* dst, int64_t outer, int64_t n_src, int64_t n_dst, int64_t at, int64_t inner,
                int64_t elem_size, bool extract);

}  // namespace rechub::kernels::cpu
