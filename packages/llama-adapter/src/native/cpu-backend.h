// The vision stage's CPU backend: ggml's CPU backend compiled by build-native.mjs from the same
// llama.cpp source, with this machine's compiler, for its instruction-set tier, and linked into the
// addon (never registered in ggml's backend registry, so node-llama-cpp does not see it).
//
// Why: node-llama-cpp 3.22.1's prebuilt Linux binaries are built with GCC 11, whose code for
// llamafile's F16 matrix kernel (tinyBLAS, the path f16 vision weights take on AVX-512) stores all
// 24 accumulators to the stack on every step of the inner loop; the same source compiled with a
// newer GCC keeps them in registers. The vision graph's f16 matmuls ran ~1.6x slower than stock
// llama.cpp's. The language model's quantized kernels are not affected, so node-llama-cpp keeps its own.
#pragma once

#include <string>

#include "ggml-backend.h"

namespace leanvision {

// A CPU device for mtmd (mtmd_context_params.device, with use_gpu) whose backends run `nThreads`
// threads; nullptr, with `why`, when the addon was built without it (build-native --no-vision-cpu,
// not x86-64), this CPU lacks the instruction set it was compiled for, or LEANVISION_VISION_CPU=node-llama-cpp.
// Devices live for the process.
ggml_backend_dev_t VisionCpuDevice(int nThreads, std::string & why);

// A backend on VisionCpuDevice, else on the CPU backend node-llama-cpp loaded; nullptr if neither.
ggml_backend_t InitVisionCpuBackend(int nThreads);

// Sets a CPU backend's thread count through its registry (any ggml CPU backend, ours or node-llama-cpp's).
void SetBackendThreads(ggml_backend_t backend, int nThreads);

// "leanvision-cpu (<tier>)" or "node-llama-cpp (<why>)": which CPU backend VisionCpuDevice gives.
std::string VisionCpuDescription(int nThreads);

}  // namespace leanvision
