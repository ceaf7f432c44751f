#include "rechub/core/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/kernels/cpu/index.h"
#ifdef RECHUB_WITH_CUDA
#include "rechub/kernels/cuda/ops.h"
#include "rechub/kernels/cuda/runtime.h"
#endif

namespace rechub {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
  }
  return "?";
}

DType dtype_from_name(const std::string& n) {
  if (n == "f32" || n == "float32" || n == "float") return DType::f32;
  if (n == "f64" || n == "float64" || n == "double") return DType::f64;
  if (n == "i32" || n == "int32") return DType::i32;
  if (n == "i64" || n == "int64") return DType::i64;
  RECHUB_FAIL("unknown dtype '" << n << "' (expected f32, f64, i32 or i64)");
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    const std::string num = s.substr(5);
    if (!num.empty() && num.size() < 4 && std::all_of(num.begin(), num.end(), ::isdigit)) return cuda(std::stoi(num));
  }
  RECHUB_FAIL("unknown device '" << s << "' (expected cpu, cuda or cuda:N)");
}

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// ---- Tensor -------------------------------------------------------------------------------------

void Tensor::check_defined(const char* what) const {
  RECHUB_CHECK(impl_ != nullptr, what << "() called on an undefined tensor");
}
const Shape& Tensor::shape() const {
  check_defined("shape");
  return impl_->shape;
}
int64_t Tensor::size(int64_t d) const {
  const int64_t n = dim();
  RECHUB_CHECK(d >= -n && d < n,
               "size(" << d << "): dimension out of range for a tensor of shape " << shape_str(shape()));
  return shape()[d < 0 ? d + n : d];
}
DType Tensor::dtype() const {
  check_defined("dtype");
  return impl_->dtype;
}
Device Tensor::device() const {
  check_defined("device");
  if (impl_->sparse_values) return impl_->sparse_values->storage->device();
  return impl_->storage->device();
}
void* Tensor::raw_data() const {
  check_defined("data");
  RECHUB_CHECK(!is_sparse(), "data() of a row-sparse tensor: use sparse_indices()/sparse_values() or to_dense()");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * static_cast<int64_t>(dtype_size(impl_->dtype));
}
bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }
Tensor& Tensor::requires_grad_(bool on) {
  check_defined("requires_grad_");
  RECHUB_CHECK(is_leaf(), "requires_grad_() on a tensor produced by an op: only leaves can be marked (use detach())");
  RECHUB_CHECK(!on || is_floating(dtype()),
               "requires_grad_(): only floating-point tensors can require grad, got " << dtype_name(dtype()));
  impl_->requires_grad = on;
  return *this;
}
bool Tensor::is_leaf() const { return !impl_ || impl_->grad_fn == nullptr; }
Tensor Tensor::grad() const {
  check_defined("grad");
  return Tensor(impl_->grad);
}
void Tensor::set_grad(const Tensor& g) {
  check_defined("set_grad");
  if (g.defined())
    RECHUB_CHECK(g.shape() == shape(), "set_grad: gradient shape " << shape_str(g.shape())
                                                                   << " differs from tensor shape "
                                                                   << shape_str(shape()));
  impl_->grad = g.impl_ptr();
}
void Tensor::zero_grad() {
  check_defined("zero_grad");
  impl_->grad.reset();
}
void Tensor::register_hook(GradHook hook) {
  check_defined("register_hook");
  RECHUB_CHECK(requires_grad(), "register_hook on a tensor that does not require grad");
  impl_->hooks.push_back(std::move(hook));
}
const std::shared_ptr<Node>& Tensor::grad_fn() const {
  check_defined("grad_fn");
  return impl_->grad_fn;
}
const std::string& Tensor::name() const {
  check_defined("name");
  return impl_->name;
}
Tensor& Tensor::set_name(std::string n) {
  check_defined("set_name");
  impl_->name = std::move(n);
  return *this;
}
Tensor Tensor::detach() const {
  check_defined("detach");
  auto d = std::make_shared<TensorImpl>();
  d->storage = impl_->storage;
  d->offset = impl_->offset;
  d->shape = impl_->shape;
  d->dtype = impl_->dtype;
  d->sparse_indices = impl_->sparse_indices;
  d->sparse_values = impl_->sparse_values;
  d->name = impl_->name;
  return Tensor(d);
}

Tensor Tensor::clone() const {
  check_defined("clone");
  if (is_sparse()) return sparse_rows(sparse_indices().clone(), sparse_values().clone(), shape());
  Tensor out = empty(shape(), {.dtype = dtype(), .device = device()});
  copy_bytes(out.raw_data(), device(), raw_data(), device(), nbytes());
  return out;
}

namespace {
template <class From, class To>
void convert(const From* src, To* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<To>(src[i]);
}
template <class To>
void convert_from(const Tensor& src, To* dst) {
  const int64_t n = src.numel();
  switch (src.dtype()) {
    case DType::f32:
      convert(src.data<float>(), dst, n);
      break;
    case DType::f64:
      convert(src.data<double>(), dst, n);
      break;
    case DType::i32:
      convert(src.data<int32_t>(), dst, n);
      break;
    case DType::i64:
      convert(src.data<int64_t>(), dst, n);
      break;
  }
}
}  // namespace

Tensor Tensor::to(DType t) const {
  check_defined("to");
  if (t == dtype()) return *this;
  if (device().is_cuda() && !is_sparse()) return to(Device::cpu()).to(t).to(device());  // small tensors (indices)
  RECHUB_CHECK(device().is_cpu(),
               "to(" << dtype_name(t) << "): dtype conversion runs on the CPU; move the tensor first");
  RECHUB_CHECK(!is_sparse(), "to(dtype) of a row-sparse tensor is not supported");
  Tensor out = empty(shape(), {.dtype = t});
  switch (t) {
    case DType::f32:
      convert_from(*this, out.data<float>());
      break;
    case DType::f64:
      convert_from(*this, out.data<double>());
      break;
    case DType::i32:
      convert_from(*this, out.data<int32_t>());
      break;
    case DType::i64:
      convert_from(*this, out.data<int64_t>());
      break;
  }
  return out;
}

Tensor Tensor::to(Device d) const {
  check_defined("to");
  if (d == device()) return *this;
  if (is_sparse()) return sparse_rows(sparse_indices().to(d), sparse_values().to(d), shape());
  Tensor out = empty(shape(), {.dtype = dtype(), .device = d});
  copy_bytes(out.raw_data(), d, raw_data(), device(), nbytes());
  return out;
}

Tensor upload(const Tensor& host, Device dev) {
  if (host.device() == dev) return host;
#ifdef RECHUB_WITH_CUDA
  if (dev.is_cuda() && host.device().is_cpu() && !host.is_sparse()) {
    Tensor d = empty(host.shape(), {.dtype = host.dtype(), .device = dev});
    cuda::upload(d.raw_data(), dev.index, host.raw_data(), host.nbytes());
    return d;
  }
#endif
  return host.to(dev);
}

Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::fill_(double v) {
  check_defined("fill_");
  const int64_t n = numel();
#ifdef RECHUB_WITH_CUDA
  if (device().is_cuda()) {
    RECHUB_CHECK(!is_sparse(), "fill_ of a row-sparse tensor");
    cuda::use_device(device().index);
    kernels::cuda::fill(raw_data(), n, static_cast<int>(dtype_size(dtype())), is_floating(dtype()), v);
    bump_version();
    return *this;
  }
#endif
  RECHUB_CHECK(device().is_cpu(), "fill_ on " << device().str() << " is not supported; fill on the CPU and copy");
  switch (dtype()) {
    case DType::f32:
      std::fill_n(data<float>(), n, static_cast<float>(v));
      break;
    case DType::f64:
      std::fill_n(data<double>(), n, v);
      break;
    case DType::i32:
      std::fill_n(data<int32_t>(), n, static_cast<int32_t>(v));
      break;
    case DType::i64:
      std::fill_n(data<int64_t>(), n, static_cast<int64_t>(v));
      break;
  }
  bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_defined("copy_");
  RECHUB_CHECK(src.defined(), "copy_ from an undefined tensor");
  RECHUB_CHECK(src.shape() == shape() && src.dtype() == dtype(),
               "copy_: source " << shape_str(src.shape()) << " " << dtype_name(src.dtype())
                                << " does not match destination " << shape_str(shape()) << " " << dtype_name(dtype()));
  copy_bytes(raw_data(), device(), src.raw_data(), src.device(), nbytes());
  bump_version();
  return *this;
}

Tensor& Tensor::move_to_(Device d) {
  check_defined("move_to_");
  RECHUB_CHECK(!is_sparse(), "move_to_ of a row-sparse tensor is not supported");
  if (d == device()) return *this;
  Tensor moved = to(d);  // a fresh storage on d holding a copy
  impl_->storage = moved.impl()->storage;
  impl_->offset = moved.impl()->offset;
  return *this;
}

uint64_t Tensor::version() const {
  check_defined("version");
  return impl_->storage ? impl_->storage->version() : 0;
}
void Tensor::bump_version() {
  if (impl_ && impl_->storage) impl_->storage->bump_version();
}

double Tensor::item() const {
  check_defined("item");
  RECHUB_CHECK(numel() == 1, "item() needs a tensor with one element, got shape " << shape_str(shape()));
  Tensor c = device().is_cpu() ? *this : to(Device::cpu());
  switch (dtype()) {
    case DType::f32:
      return c.data<float>()[0];
    case DType::f64:
      return c.data<double>()[0];
    case DType::i32:
      return c.data<int32_t>()[0];
    case DType::i64:
      return static_cast<double>(c.data<int64_t>()[0]);
  }
  return 0;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  check_defined("to_vector");
  Tensor c = is_sparse() ? to_dense() : *this;
  if (!c.device().is_cpu()) c = c.to(Device::cpu());
  if (c.dtype() != dtype_of<T>::value) c = c.to(dtype_of<T>::value);
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

std::string Tensor::to_string(int64_t max_elems) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(" << shape_str(shape()) << ", " << dtype_name(dtype());
  if (!device().is_cpu()) os << ", " << device().str();
  if (is_sparse()) os << ", row-sparse with " << sparse_indices().numel() << " rows";
  if (requires_grad()) os << ", requires_grad";
  os << ")";
  if (!is_sparse() && numel() > 0) {
    const auto v = to_vector<double>();
    os << " [";
    const int64_t n = std::min<int64_t>(max_elems, numel());
    for (int64_t i = 0; i < n; ++i) os << (i ? ", " : "") << std::setprecision(6) << v[i];
    if (n < numel()) os << ", ...";
    os << "]";
  }
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

// ---- row-sparse ------------------------------------------------------------------------------

bool Tensor::is_sparse() const { return impl_ && impl_->sparse_values != nullptr; }
Tensor Tensor::sparse_indices() const {
  RECHUB_CHECK(is_sparse(), "sparse_indices() of a dense tensor");
  return Tensor(impl_->sparse_indices);
}
Tensor Tensor::sparse_values() const {
  RECHUB_CHECK(is_sparse(), "sparse_values() of a dense tensor");
  return Tensor(impl_->sparse_values);
}

Tensor Tensor::sparse_rows(const Tensor& indices, const Tensor& values, const Shape& dense_shape) {
  RECHUB_CHECK(indices.dtype() == DType::i64 && indices.dim() == 1, "sparse_rows: indices must be a 1-D i64 tensor");
  RECHUB_CHECK(dense_shape.size() == 2 && values.dim() == 2 && values.size(0) == indices.size(0) &&
                   values.size(1) == dense_shape[1],
               "sparse_rows: values " << shape_str(values.shape()) << " do not fit " << indices.size(0)
                                      << " rows of dense shape " << shape_str(dense_shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = dense_shape;
  impl->dtype = values.dtype();
  impl->sparse_indices = indices.impl_ptr();
  impl->sparse_values = values.impl_ptr();
  return Tensor(impl);
}

Tensor Tensor::coalesce() const {
  RECHUB_CHECK(is_sparse(), "coalesce() of a dense tensor");
  if (device().is_cuda()) return to(Device::cpu()).coalesce().to(device());
  RECHUB_CHECK(device().is_cpu(), "coalesce() runs on the CPU");
  Tensor idx = sparse_indices(), val = sparse_values();
  const int64_t n = idx.numel(), d = val.size(1);
  // Rows already strictly ascending (what the embedding backward produces): nothing to sum or sort.
  const int64_t* pi = idx.data<int64_t>();
  bool ascending = true;
  for (int64_t r = 1; r < n && ascending; ++r) ascending = pi[r - 1] < pi[r];
  if (ascending) return *this;
  std::vector<int64_t> uniq;
  std::vector<int64_t> inverse(n);
  kernels::cpu::unique_rows(pi, n, uniq, inverse.data());
  const int64_t u = static_cast<int64_t>(uniq.size());
  Tensor oi = from_vector(uniq, {u});
  Tensor ov = zeros({u, d}, {.dtype = val.dtype()});
  if (val.dtype() == DType::f32)
    kernels::cpu::scatter_add_rows(val.data<float>(), inverse.data(), n, d, ov.data<float>());
  else
    kernels::cpu::scatter_add_rows(val.data<double>(), inverse.data(), n, d, ov.data<double>());
  return sparse_rows(oi, ov, shape());
}

Tensor Tensor::to_dense() const {
  if (!is_sparse()) return *this;
  if (device().is_cuda()) return to(Device::cpu()).to_dense().to(device());
  const Tensor c = coalesce();
  Tensor out = zeros(shape(), {.dtype = dtype()});
  const Tensor v = c.sparse_values();
  const Tensor idx = c.sparse_indices();
  const int64_t* pi = idx.data<int64_t>();
  const size_t row_bytes = static_cast<size_t>(shape()[1]) * dtype_size(dtype());
  auto* po = static_cast<char*>(out.raw_data());
  const auto* pv = static_cast<const char*>(v.raw_data());
  for (int64_t r = 0; r < idx.numel(); ++r) std::memcpy(po + pi[r] * row_bytes, pv + r * row_bytes, row_bytes);
  return out;
}

// ---- creation -----------------------------------------------------------------------------------

Tensor empty(const Shape& shape, TensorOptions opts) {
  for (int64_t d : shape)
    RECHUB_CHECK(d >= 0, "cannot create a tensor of shape " << shape_str(shape) << ": negative size");
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = opts.dtype;
  impl->storage =
      std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(opts.dtype), opts.device);
  Tensor t(impl);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  const bool rg = opts.requires_grad;
  opts.requires_grad = false;
  Tensor t = empty(shape, opts);
  t.fill_(value);
  if (rg) t.requires_grad_(true);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions opts) {
  if (!opts.device.is_cpu()) return full(shape, 0.0, opts);  // a memset on the device
  Tensor t = empty(shape, {.dtype = opts.dtype, .device = opts.device});
  std::memset(t.raw_data(), 0, t.nbytes());
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}
Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }

Tensor arange(int64_t start, int64_t end, int64_t step, TensorOptions opts) {
  RECHUB_CHECK(step != 0, "arange: step must not be 0");
  const int64_t n = std::max<int64_t>(0, (end - start + step + (step > 0 ? -1 : 1)) / step);
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(start + i * step);
  return from_vector(v, {n}, {.dtype = DType::f64}).to(opts.dtype).to(opts.device);
}

namespace {
template <class T>
Tensor from_host(const std::vector<T>& v, const Shape& shape, TensorOptions opts) {
  RECHUB_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape),
               "from_vector: " << v.size() << " values do not fill shape " << shape_str(shape));
  Tensor t = empty(shape, {.dtype = dtype_of<T>::value});
  if (!v.empty()) std::memcpy(t.raw_data(), v.data(), v.size() * sizeof(T));  // empty: data() may be null
  if (opts.dtype != dtype_of<T>::value) t = t.to(opts.dtype);
  if (!opts.device.is_cpu()) t = t.to(opts.device);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}
}  // namespace

Tensor from_vector(const std::vector<float>& v, const Shape& s, TensorOptions o) { return from_host(v, s, o); }
Tensor from_vector(const std::vector<double>& v, const Shape& s, TensorOptions o) { return from_host(v, s, o); }
Tensor from_vector(const std::vector<int32_t>& v, const Shape& s, TensorOptions o) { return from_host(v, s, o); }
Tensor from_vector(const std::vector<int64_t>& v, const Shape& s, TensorOptions o) { return from_host(v, s, o); }

Tensor make_view(const Tensor& base, int64_t offset, const Shape& shape) {
  RECHUB_CHECK(!base.is_sparse(), "views of row-sparse tensors are not supported");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->offset = base.impl()->offset + offset;
  impl->shape = shape;
  impl->dtype = base.dtype();
  return Tensor(impl);
}

}  // namespace rechub
