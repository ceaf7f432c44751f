#pragma once
// RECHUB_HOST_DEVICE marks a function that both backends compile: the CPU kernels as ordinary C++,
// the CUDA kernels (nvcc) for the device too. The per-element formulas that kernels/cpu and
// kernels/cuda share are written once this way (e.g. kernels/experts.h, kernels/batchnorm.h).
#ifdef __CUDACC__
#define RECHUB_HOST_DEVICE __host__ __device__
#else
#define RECHUB_HOST_DEVICE
#endif
