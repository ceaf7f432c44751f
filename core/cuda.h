#pragma once
// The CUDA runtime services that layers above core use directly, through core: pinned host
// buffers, events and copies on the copy stream (mtl's CUDA batch feeder, mtl/trainer/trainer.cpp),
// device synchronisation and the allocator's statistics. They are the CUDA backend's
// (kernels/cuda/runtime.h, namespace rechub::cuda), declared without CUDA headers in every build;
// calling them needs a build with the backend (RECHUB_WITH_CUDA). Tensors, devices and
// cuda_available() are in core/tensor.h and core/device.h.
#include "rechub/kernels/cuda/runtime.h"
