#pragma once
// Tensor: a cheap shared handle to contiguous row-major data plus the autograd bookkeeping.
//
// A tensor is either dense (the usual case) or row-sparse: a gradient of an embedding table that
// holds only the rows a batch touched (`sparse_indices()` i64 [n], `sparse_values()` [n, dim]),
// standing for a dense [rows, dim] matrix that is zero elsewhere.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "rechub/core/device.h"
#include "rechub/core/dtype.h"
#include "rechub/core/error.h"
#include "rechub/core/storage.h"

namespace rechub {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3]"
int64_t shape_numel(const Shape& s);

struct Node;
class Tensor;
using GradHook = std::function<Tensor(const Tensor&)>;

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  bool requires_grad = false;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // the op that produced this tensor (null for leaves)
  std::shared_ptr<TensorImpl> grad;
  std::vector<GradHook> hooks;
  // Row-sparse layout: `shape` is the dense shape; the data lives in these two.
  std::shared_ptr<TensorImpl> sparse_indices;
  std::shared_ptr<TensorImpl> sparse_values;
  std::string name;  // optional, for messages (parameters carry their names)
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(shape()); }
  DType dtype() const;
  Device device() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }

  // Typed access to the (dense, CPU or device) data; checks the dtype.
  template <class T>
  T* data();
  template <class T>
  const T* data() const;
  void* raw_data() const;

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);  // only on leaves
  bool is_leaf() const;
  Tensor grad() const;  // undefined until a backward reaches this tensor
  void set_grad(const Tensor& g);
  void zero_grad();  // drops the gradient (the next backward starts from nothing)
  // A hook sees each gradient that reaches this tensor and may return a replacement
  // (or an undefined Tensor to keep the gradient as it is).
  void register_hook(GradHook hook);
  const std::shared_ptr<Node>& grad_fn() const;
  // Same storage, no history.
  Tensor detach() const;
  const std::string& name() const;
  Tensor& set_name(std::string n);

  // ---- copies and conversions ----
  Tensor clone() const;  // deep copy, no history (use ops for differentiable copies)
  Tensor to(DType t) const;
  Tensor to(Device d) const;
  Tensor contiguous_copy() const { return clone(); }

  // ---- in-place (under no-grad; bump the version) ----
  Tensor& zero_();
  Tensor& fill_(double v);
  Tensor& copy_(const Tensor& src);  // same shape and dtype
  // Moves this tensor's data to `d` IN PLACE: the TensorImpl (and so every handle to it) stays,
  // its storage is replaced by a new one on `d` holding a copy of the data (offset 0). Views made
  // earlier keep the old storage. Dense tensors only; a no-op when already on `d`.
  Tensor& move_to_(Device d);
  uint64_t version() const;
  void bump_version();

  // ---- values ----
  double item() const;  // one-element tensors
  template <class T>
  std::vector<T> to_vector() const;
  std::string to_string(int64_t max_elems = 32) const;

  // ---- row-sparse ----
  bool is_sparse() const;
  Tensor sparse_indices() const;
  Tensor sparse_values() const;
  // Sums duplicate rows, sorted by row index. A tensor whose rows are already strictly ascending
  // is returned as it is (the same indices and values).
  Tensor coalesce() const;
  Tensor to_dense() const;
  static Tensor sparse_rows(const Tensor& indices, const Tensor& values, const Shape& dense_shape);

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  void check_defined(const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- creation ----
Tensor empty(const Shape& shape, TensorOptions opts = {});
// `host` copied to `device` without making the host wait for the GPU: on CUDA the bytes go through
// the runtime's pinned staging ring and the copy is queued on the compute stream (ordered before
// the kernels that read it), so the host tensor may be dropped at once; Tensor::to synchronises
// after a pageable copy instead. Same as host.to(device) for any other case (sparse, CPU target).
Tensor upload(const Tensor& host, Device device);
Tensor zeros(const Shape& shape, TensorOptions opts = {});
Tensor ones(const Shape& shape, TensorOptions opts = {});
Tensor full(const Shape& shape, double value, TensorOptions opts = {});
Tensor arange(int64_t start, int64_t end, int64_t step = 1, TensorOptions opts = {.dtype = DType::i64});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
// From host data (copied). The shape's element count must match.
Tensor from_vector(const std::vector<float>& v, const Shape& shape, TensorOptions opts = {});
Tensor from_vector(const std::vector<double>& v, const Shape& shape, TensorOptions opts = {.dtype = DType::f64});
Tensor from_vector(const std::vector<int32_t>& v, const Shape& shape, TensorOptions opts = {.dtype = DType::i32});
Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape, TensorOptions opts = {.dtype = DType::i64});
// Wraps a view of another tensor's storage (used by reshape/narrow); no copy, no history.
Tensor make_view(const Tensor& base, int64_t offset, const Shape& shape);

template <class T>
T* Tensor::data() {
  check_defined("data");
  RECHUB_CHECK(dtype_of<T>::value == dtype(), "tensor data requested as " << dtype_name(dtype_of<T>::value)
                                                                          << " but the tensor holds "
                                                                          << dtype_name(dtype()));
  return static_cast<T*>(raw_data());
}
template <class T>
const T* Tensor::data() const {
  return const_cast<Tensor*>(this)->data<T>();
}

}  // namespace rechub
