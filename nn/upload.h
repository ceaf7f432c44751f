#pragma once
// Internal to nn/ (and mtl/): a host tensor copied to a device without making the host wait for
// the GPU. On CUDA the bytes go through the runtime's pinned staging ring and the copy is queued
// on the compute stream (stream-ordered with the kernels that read it); the host tensor may be
// dropped at once. Tensor::to(Device) would instead synchronise the stream after a pageable copy.
#include "rechub/core/tensor.h"
#ifdef RECHUB_WITH_CUDA
#include "rechub/kernels/cuda/runtime.h"
#endif

namespace rechub::nn {

inline Tensor upload_to(const Tensor& host, Device dev) {
  if (host.device() == dev) return host;
#ifdef RECHUB_WITH_CUDA
  if (dev.is_cuda() && host.device().is_cpu() && !host.is_sparse()) {
    Tensor d = empty(host.shape(), {.dtype = host.dtype(), .device = dev});
    rechub::cuda::upload(d.raw_data(), dev.index, host.raw_data(), host.nbytes());
    return d;
  }
#endif
  return host.to(dev);
}

}  // namespace rechub::nn
