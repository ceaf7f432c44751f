// Shape and indexing ops: reshape/squeeze (views), concat/stack/split/narrow, index_select,
// gather, scatter_add, and the embedding lookup with its row-sparse backward.
#include <cstring>

#include "rechub/core/dispatch.h"
#include "rechub/core/ops.h"
#include "rechub/kernels/cpu/index.h"

namespace rechub::ops {
using detail::check_float_operands;
using detail::index_as_i64;
using detail::wrap_dim;

Tensor reshape(const Tensor& a, const Shape& shape) {
  detail::check_defined("reshape", a, "input");
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      RECHUB_CHECK(infer < 0, "reshape: only one dimension may be -1 in " << shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      RECHUB_CHECK(s[i] >= 0, "reshape: negative size in " << shape_str(shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    RECHUB_CHECK(known > 0 && a.numel() % known == 0, "reshape: cannot infer the -1 dimension of "
                                                          << shape_str(shape) << " for " << a.numel() << " elements");
    s[infer] = a.numel() / known;
  }
  RECHUB_CHECK(shape_numel(s) == a.numel(), "reshape: shape " << shape_str(shape) << " does not hold the " << a.numel()
                                                              << " elements of " << shape_str(a.shape()));
  Tensor out = make_view(a, 0, s);
  return record(out, "reshape", {a}, [orig = a.shape()](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{reshape(g, orig)};
  });
}

Tensor unsqueeze(const Tensor& a, int64_t dim) {
  detail::check_defined("unsqueeze", a, "input");
  dim = wrap_dim("unsqueeze", dim, a.dim() + 1);
  Shape s = a.shape();
  s.insert(s.begin() + dim, 1);
  return reshape(a, s);
}

Tensor squeeze(const Tensor& a, int64_t dim) {
  detail::check_defined("squeeze", a, "input");
  dim = wrap_dim("squeeze", dim, a.dim());
  RECHUB_CHECK(a.size(dim) == 1, "squeeze: dimension " << dim << " of " << shape_str(a.shape()) << " has size "
                                                       << a.size(dim) << ", not 1");
  Shape s = a.shape();
  s.erase(s.begin() + dim);
  return reshape(a, s);
}

Tensor narrow(const Tensor& a, int64_t dim, int64_t start, int64_t length) {
  detail::check_defined("narrow", a, "input");
  dim = wrap_dim("narrow", dim, a.dim());
  RECHUB_CHECK(
      start >= 0 && length >= 0 && start + length <= a.size(dim),
      "narrow: [" << start << ", " << start + length << ") is outside dimension " << dim << " of size " << a.size(dim));
  int64_t outer, n, inner;
  detail::split_dims(a.shape(), dim, outer, n, inner);
  Shape s = a.shape();
  s[dim] = length;
  Tensor out;
  if (outer == 1) {
    out = make_view(a, start * inner, s);  // contiguous block: a view
  } else {
    out = empty(s, {.dtype = a.dtype(), .device = a.device()});
    RECHUB_DEVICE_SWITCH(a,
                         kernels::cuda::copy_block(a.raw_data(), out.raw_data(), outer, n, length, start, inner,
                                                   dtype_size(a.dtype()), true),
                         kernels::cpu::copy_block(a.raw_data(), out.raw_data(), outer, n, length, start, inner,
                                                  dtype_size(a.dtype()), true));
  }
  return record(out, "narrow", {a}, [shape = a.shape(), dim, start](const Tensor& g, const std::vector<bool>&) {
    int64_t outer, n, inner;
    detail::split_dims(shape, dim, outer, n, inner);
    Tensor gx = zeros(shape, {.dtype = g.dtype(), .device = g.device()});
    RECHUB_DEVICE_SWITCH(g,
                         kernels::cuda::copy_block(g.raw_data(), gx.raw_data(), outer, g.size(dim), n, start, inner,
                                                   dtype_size(g.dtype()), false),
                         kernels::cpu::copy_block(g.raw_data(), gx.raw_data(), outer, g.size(dim), n, start, inner,
                                                  dtype_size(g.dtype()), false));
    return std::vector<Tensor>{gx};
  });
}

Tensor slice(const Tensor& a, int64_t dim, int64_t start, int64_t end) {
  detail::check_defined("slice", a, "input");
  const int64_t d = wrap_dim("slice", dim, a.dim());
  const int64_t n = a.size(d);
  if (start < 0) start += n;
  if (end < 0) end += n;
  RECHUB_CHECK(start >= 0 && end <= n && start <= end,
               "slice: [" << start << ", " << end << ") is outside dimension " << d << " of size " << n);
  return narrow(a, d, start, end - start);
}

Tensor concat(const std::vector<Tensor>& ts, int64_t dim) {
  RECHUB_CHECK(!ts.empty(), "concat: no tensors given");
  for (const Tensor& t : ts) detail::check_defined("concat", t, "tensors");
  const Tensor& f = ts[0];
  dim = wrap_dim("concat", dim, f.dim());
  Shape s = f.shape();
  int64_t total = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    RECHUB_CHECK(t.dtype() == f.dtype(), "concat: tensor " << i << " has dtype " << dtype_name(t.dtype())
                                                           << ", expected " << dtype_name(f.dtype()));
    RECHUB_CHECK(t.device() == f.device(),
                 "concat: tensor " << i << " is on " << t.device().str() << ", tensor 0 on " << f.device().str());
    RECHUB_CHECK(t.dim() == f.dim(), "concat: tensor " << i << " has rank " << t.dim() << ", expected " << f.dim());
    for (int64_t d = 0; d < f.dim(); ++d)
      RECHUB_CHECK(d == dim || t.size(d) == f.size(d),
                   "concat: tensor " << i << " has shape " << shape_str(t.shape()) << ", incompatible with "
                                     << shape_str(f.shape()) << " outside dimension " << dim);
    total += t.size(dim);
  }
  s[dim] = total;
  Tensor out = empty(s, {.dtype = f.dtype(), .device = f.device()});
  int64_t outer, n, inner;
  detail::split_dims(s, dim, outer, n, inner);
  int64_t at = 0;
  std::vector<int64_t> sizes;
  for (const Tensor& t : ts) {
    RECHUB_DEVICE_SWITCH(f,
                         kernels::cuda::copy_block(t.raw_data(), out.raw_data(), outer, t.size(dim), total, at, inner,
                                                   dtype_size(f.dtype()), false),
                         kernels::cpu::copy_block(t.raw_data(), out.raw_data(), outer, t.size(dim), total, at, inner,
                                                  dtype_size(f.dtype()), false));
    at += t.size(dim);
    sizes.push_back(t.size(dim));
  }
  if (!is_floating(f.dtype())) return out;
  return record(out, "concat", ts, [sizes, dim](const Tensor& g, const std::vector<bool>& needs) {
    std::vector<Tensor> gs(sizes.size());
    int64_t at = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (needs[i]) gs[i] = narrow(g, dim, at, sizes[i]).clone();
      at += sizes[i];
    }
    return gs;
  });
}

Tensor stack(const std::vector<Tensor>& ts, int64_t dim) {
  RECHUB_CHECK(!ts.empty(), "stack: no tensors given");
  dim = wrap_dim("stack", dim, ts[0].dim() + 1);
  std::vector<Tensor> u;
  u.reserve(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    RECHUB_CHECK(ts[i].defined() && ts[i].shape() == ts[0].shape(),
                 "stack: tensor " << i << " has shape " << (ts[i].defined() ? shape_str(ts[i].shape()) : "undefined")
                                  << ", expected " << shape_str(ts[0].shape()));
    u.push_back(unsqueeze(ts[i], dim));
  }
  return concat(u, dim);
}

std::vector<Tensor> split(const Tensor& a, const std::vector<int64_t>& sizes, int64_t dim) {
  detail::check_defined("split", a, "input");
  dim = wrap_dim("split", dim, a.dim());
  int64_t total = 0;
  for (int64_t s : sizes) {
    RECHUB_CHECK(s >= 0, "split: negative size " << s);
    total += s;
  }
  RECHUB_CHECK(total == a.size(dim),
               "split: sizes add up to " << total << " but dimension " << dim << " has size " << a.size(dim));
  std::vector<Tensor> out;
  int64_t at = 0;
  for (int64_t s : sizes) {
    out.push_back(narrow(a, dim, at, s));
    at += s;
  }
  return out;
}

std::vector<Tensor> split(const Tensor& a, int64_t split_size, int64_t dim) {
  detail::check_defined("split", a, "input");
  RECHUB_CHECK(split_size > 0, "split: split_size must be positive, got " << split_size);
  const int64_t n = a.size(wrap_dim("split", dim, a.dim()));
  std::vector<int64_t> sizes;
  for (int64_t at = 0; at < n; at += split_size) sizes.push_back(std::min(split_size, n - at));
  return split(a, sizes, dim);
}

static void check_rows(const char* op, const Tensor& idx, int64_t rows) {
#ifdef RECHUB_WITH_CUDA
  // On CUDA one counting pass; only when it finds a bad index is the index read back for the message.
  if (idx.device().is_cuda()) {
    cuda::use_device(idx.device().index);
    if (kernels::cuda::count_out_of_range(idx.data<int64_t>(), idx.numel(), rows) == 0) return;
    check_rows(op, idx.to(Device::cpu()), rows);
    return;
  }
#endif
  const int64_t* p = idx.data<int64_t>();
  for (int64_t i = 0; i < idx.numel(); ++i)
    RECHUB_CHECK(p[i] >= 0 && p[i] < rows,
                 op << ": index " << p[i] << " at position " << i << " is out of range [0, " << rows << ")");
}

Tensor index_select(const Tensor& a, const Tensor& index) {
  detail::check_defined("index_select", a, "input");
  RECHUB_CHECK(a.dim() >= 1, "index_select: input must have at least one dimension");
  Tensor idx = index_as_i64("index_select", index);
  RECHUB_CHECK(idx.device() == a.device(),
               "index_select: index on " << idx.device().str() << ", input on " << a.device().str());
  RECHUB_CHECK(idx.dim() == 1, "index_select: index must be 1-D, got " << shape_str(idx.shape()));
  check_rows("index_select", idx, a.size(0));
  Shape s = a.shape();
  s[0] = idx.numel();
  const int64_t d = a.size(0) ? a.numel() / a.size(0) : 0;
  Tensor out = empty(s, {.dtype = a.dtype(), .device = a.device()});
  RECHUB_DEVICE_SWITCH(
      a,
      kernels::cuda::gather_rows(a.raw_data(), idx.data<int64_t>(), idx.numel(), d, dtype_size(a.dtype()),
                                 out.raw_data()),
      switch (a.dtype()) {
        case DType::f32:
          kernels::cpu::gather_rows(a.data<float>(), idx.data<int64_t>(), idx.numel(), d, out.data<float>());
          break;
        case DType::f64:
          kernels::cpu::gather_rows(a.data<double>(), idx.data<int64_t>(), idx.numel(), d, out.data<double>());
          break;
        case DType::i32:
          kernels::cpu::gather_rows(a.data<int32_t>(), idx.data<int64_t>(), idx.numel(), d, out.data<int32_t>());
          break;
        case DType::i64:
          kernels::cpu::gather_rows(a.data<int64_t>(), idx.data<int64_t>(), idx.numel(), d, out.data<int64_t>());
          break;
      });
  return record(out, "index_select", {a}, [shape = a.shape(), idx](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{scatter_add(zeros(shape, {.dtype = g.dtype(), .device = g.device()}), idx, g)};
  });
}

Tensor gather(const Tensor& a, const Tensor& index) {
  check_float_operands("gather", {&a});
  Tensor idx = index_as_i64("gather", index);
  RECHUB_CHECK(idx.device() == a.device(),
               "gather: index on " << idx.device().str() << ", input on " << a.device().str());
  RECHUB_CHECK(a.dim() == 2 && idx.dim() == 2 && idx.size(1) <= a.size(1),
               "gather: expected a 2-D input and a 2-D index with at most as many columns, got "
                   << shape_str(a.shape()) << " and " << shape_str(idx.shape()));
  check_rows("gather", idx, a.size(0));
  const int64_t R = idx.size(0), C = idx.size(1), ac = a.size(1);
  Tensor out = empty({R, C}, {.dtype = a.dtype(), .device = a.device()});
  const int64_t* pi = idx.data<int64_t>();
  RECHUB_DEVICE_SWITCH(a, kernels::cuda::gather_dim0(a.data<float>(), ac, pi, R, C, out.data<float>()),
                       RECHUB_FLOAT_DISPATCH(a.dtype(), "gather", {
                         const scalar_t* pa = a.data<scalar_t>();
                         scalar_t* po = out.data<scalar_t>();
                         for (int64_t i = 0; i < R; ++i)
                           for (int64_t j = 0; j < C; ++j) po[i * C + j] = pa[pi[i * C + j] * ac + j];
                       }));
  return record(out, "gather", {a}, [shape = a.shape(), idx](const Tensor& g, const std::vector<bool>&) {
    Tensor gx = zeros(shape, {.dtype = g.dtype(), .device = g.device()});
    const int64_t* pi = idx.data<int64_t>();
    const int64_t R = idx.size(0), C = idx.size(1), ac = shape[1];
    RECHUB_DEVICE_SWITCH(g, kernels::cuda::gather_dim0_backward(g.data<float>(), pi, R, C, ac, gx.data<float>()),
                         RECHUB_FLOAT_DISPATCH(g.dtype(), "gather backward", {
                           const scalar_t* pg = g.data<scalar_t>();
                           scalar_t* px = gx.data<scalar_t>();
                           for (int64_t i = 0; i < R; ++i)
                             for (int64_t j = 0; j < C; ++j) px[pi[i * C + j] * ac + j] += pg[i * C + j];
                         }));
    return std::vector<Tensor>{gx};
  });
}

Tensor scatter_add(const Tensor& base, const Tensor& index, const Tensor& src) {
  check_float_operands("scatter_add", {&base, &src});
  Tensor idx = index_as_i64("scatter_add", index);
  RECHUB_CHECK(idx.device() == base.device(),
               "scatter_add: index on " << idx.device().str() << ", base on " << base.device().str());
  RECHUB_CHECK(idx.dim() == 1 && src.dim() == base.dim() && src.size(0) == idx.numel(),
               "scatter_add: expected a 1-D index with one entry per row of src, got index "
                   << shape_str(idx.shape()) << ", src " << shape_str(src.shape()) << ", base "
                   << shape_str(base.shape()));
  for (int64_t d = 1; d < base.dim(); ++d)
    RECHUB_CHECK(src.size(d) == base.size(d), "scatter_add: src rows " << shape_str(src.shape())
                                                                       << " do not match base rows "
                                                                       << shape_str(base.shape()));
  check_rows("scatter_add", idx, base.size(0));
  Tensor out = base.clone();
  const int64_t d = base.size(0) ? base.numel() / base.size(0) : 0;
  RECHUB_DEVICE_SWITCH(
      base, kernels::cuda::scatter_add_rows(src.data<float>(), idx.data<int64_t>(), idx.numel(), d, out.data<float>()),
      RECHUB_FLOAT_DISPATCH(base.dtype(), "scatter_add",
                            kernels::cpu::scatter_add_rows(src.data<scalar_t>(), idx.data<int64_t>(), idx.numel(), d,
                                                           out.data<scalar_t>())));
  return record(out, "scatter_add", {base, src}, [idx](const Tensor& g, const std::vector<bool>& n) {
    return std::vector<Tensor>{n[0] ? g : Tensor(), n[1] ? index_select(g, idx) : Tensor()};
  });
}

Tensor embedding_lookup(const Tensor& table, const Tensor& ids, const EmbeddingCheck* check) {
  check_float_operands("embedding_lookup", {&table});
  RECHUB_CHECK(table.dim() == 2, "embedding_lookup: table must be [rows, dim], got " << shape_str(table.shape()));
  RECHUB_CHECK(ids.defined() && (ids.dtype() == DType::i32 || ids.dtype() == DType::i64) && ids.dim() == 2,
               "embedding_lookup: ids must be a 2-D integer tensor [batch, features]");
  const int64_t B = ids.size(0), F = ids.size(1), D = table.size(1), V = table.size(0);
  // Validate every id: against its feature's row range when given, else against the table. One
  // tight pass; the offender is looked for only when it fails.
  auto validate = [&](auto* p) {
    std::vector<int64_t> col_lo(F, 0), col_hi(F, V);
    if (check)
      for (int64_t f = 0; f < F && static_cast<size_t>(f) < check->row_ranges.size(); ++f)
        std::tie(col_lo[f], col_hi[f]) = check->row_ranges[f];
    bool ok = true;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t f = 0; f < F; ++f) {
        const int64_t id = static_cast<int64_t>(p[b * F + f]);
        ok &= (id >= col_lo[f]) & (id < col_hi[f]);
      }
    if (ok) return;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t f = 0; f < F; ++f) {
        const int64_t id = static_cast<int64_t>(p[b * F + f]);
        int64_t lo = 0, hi = V;
        if (check && static_cast<size_t>(f) < check->row_ranges.size()) std::tie(lo, hi) = check->row_ranges[f];
        if (id < lo || id >= hi) {
          const std::string fname = check && static_cast<size_t>(f) < check->feature_names.size()
                                        ? "feature '" + check->feature_names[f] + "'"
                                        : "column " + std::to_string(f);
          RECHUB_FAIL("embedding_lookup: " << fname << ", row " << b << ": id " << (id - lo)
                                           << " is outside the vocabulary of size " << (hi - lo));
        }
      }
  };
  RECHUB_CHECK(ids.device() == table.device(),
               "embedding_lookup: ids on " << ids.device().str() << ", table on " << table.device().str());
  bool valid = check && check->ids_checked;
#ifdef RECHUB_WITH_CUDA
  // On CUDA one counting pass over the ids; the host search for the offender runs only on failure.
  if (!valid && ids.device().is_cuda()) {
    cuda::use_device(ids.device().index);
    Tensor ranges;
    if (check && !check->row_ranges.empty()) {
      std::vector<int64_t> r(2 * F);
      for (int64_t f = 0; f < F; ++f)
        std::tie(r[2 * f], r[2 * f + 1]) = static_cast<size_t>(f) < check->row_ranges.size()
                                               ? check->row_ranges[f]
                                               : std::pair<int64_t, int64_t>(0, V);
      ranges = from_vector(r, {2 * F}, {.dtype = DType::i64, .device = ids.device()});
    }
    const int64_t* pr = ranges.defined() ? ranges.data<int64_t>() : nullptr;
    valid = (ids.dtype() == DType::i32 ? kernels::cuda::embedding_count_invalid(ids.data<int32_t>(), B, F, pr, V)
                                       : kernels::cuda::embedding_count_invalid(ids.data<int64_t>(), B, F, pr, V)) == 0;
  }
#endif
  if (!valid) {
    const Tensor host_ids = ids.to(Device::cpu());
    if (ids.dtype() == DType::i32)
      validate(host_ids.data<int32_t>());
    else
      validate(host_ids.data<int64_t>());
  }
  Tensor out = empty({B, F * D}, {.dtype = table.dtype(), .device = table.device()});
  RECHUB_DEVICE_SWITCH(
      table, if (ids.dtype() == DType::i32)
                 kernels::cuda::embedding_forward(table.data<float>(), D, ids.data<int32_t>(), B, F, out.data<float>());
      else kernels::cuda::embedding_forward(table.data<float>(), D, ids.data<int64_t>(), B, F, out.data<float>()),
      RECHUB_FLOAT_DISPATCH(table.dtype(), "embedding_lookup", {
        if (ids.dtype() == DType::i32)
          kernels::cpu::embedding_forward(table.data<scalar_t>(), D, ids.data<int32_t>(), B, F, out.data<scalar_t>());
        else
          kernels::cpu::embedding_forward(table.data<scalar_t>(), D, ids.data<int64_t>(), B, F, out.data<scalar_t>());
      }));
  return record(out, "embedding_lookup", {table}, [ids, V, D, B, F](const Tensor& g, const std::vector<bool>&) {
#ifdef RECHUB_WITH_CUDA
    // The sorted unique ids and their summed rows land in buffers sized for B*F rows; the
    // gradient views their first u rows.
    if (g.device().is_cuda()) {
      cuda::use_device(g.device().index);
      Tensor uniq = empty({B * F}, {.dtype = DType::i64, .device = g.device()});
      Tensor rows = empty({B * F, D}, {.dtype = g.dtype(), .device = g.device()});
      const int64_t u = ids.dtype() == DType::i32
                            ? kernels::cuda::embedding_backward(g.data<float>(), D, ids.data<int32_t>(), B, F, V,
                                                                uniq.data<int64_t>(), rows.data<float>())
                            : kernels::cuda::embedding_backward(g.data<float>(), D, ids.data<int64_t>(), B, F, V,
                                                                uniq.data<int64_t>(), rows.data<float>());
      return std::vector<Tensor>{Tensor::sparse_rows(make_view(uniq, 0, {u}), make_view(rows, 0, {u, D}), {V, D})};
    }
#endif
    // The kernel asks for the outputs once it knows how many distinct rows there are.
    Tensor uniq, rows;
    RECHUB_FLOAT_DISPATCH(g.dtype(), "embedding_lookup backward", {
      const kernels::cpu::RowsAlloc<scalar_t> alloc = [&](int64_t u) {
        uniq = empty({u}, {.dtype = DType::i64});
        rows = empty({u, D}, {.dtype = g.dtype()});
        return std::pair<int64_t*, scalar_t*>(uniq.data<int64_t>(), rows.data<scalar_t>());
      };
      if (ids.dtype() == DType::i32)
        kernels::cpu::embedding_backward(g.data<scalar_t>(), D, ids.data<int32_t>(), B, F, V, alloc);
      else
        kernels::cpu::embedding_backward(g.data<scalar_t>(), D, ids.data<int64_t>(), B, F, V, alloc);
    });
    const Tensor result = Tensor::sparse_rows(uniq, rows, {V, D});
    return std::vector<Tensor>{result};
  });
}

}  // namespace rechub::ops
