// mmproj inspection: what the native side reads from the GGUF header of an mmproj before llama.cpp
// loads it.
#pragma once

#include <string>

#include "ggml-cpp.h"
#include "napi-common.h"

namespace leanvision {

// An mmproj's GGUF header (metadata and tensor infos, no tensor data).
struct GgufFile {
    std::string path;
    gguf_context_ptr gguf;
    ggml_context_ptr meta;  // one no-alloc tensor per tensor info

    const ggml_tensor * Tensor(const char * name) const { return ggml_get_tensor(meta.get(), name); }
    // File offset of a tensor's data.
    size_t DataOffset(const char * name) const;
};

// Opens the GGUF header of `path`; INVALID_INPUT when the file is missing or not a GGUF file.
void OpenGguf(const std::string & path, GgufFile & out);

// What the vision stage needs to know about the mmproj (see VisionContextInfo in src/native-binding.ts).
struct VisionInfo {
    std::string projectorType;
    int imageSize = 0, patchSize = 0, hiddenDim = 0, heads = 0, projectionDim = 0, layers = 0;
    int featureLayerIndex = 0;  // index of the last encoder layer the graph runs (its attention is captured)
    bool hasCls = false;
    int gridRows = 0, gridCols = 0;
};

// Checks that `f` is a LLaVA `mlp` vision mmproj and reads its layout.
VisionInfo Inspect(const GgufFile & f);

}  // namespace leanvision
