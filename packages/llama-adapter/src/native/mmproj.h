// mmproj inspection on the native side. The complete check of an mmproj lives in TypeScript
// (src/mmproj.ts, run by src/native-binding.ts before createVisionContext): it reads the GGUF header,
// refuses anything llama.cpp's llava graph would crash on or misread, and hands the native side the
// layout it found (VisionLayout). Here we only open the header for the tensors the native projector
// loads itself, and check those against that layout, so the native code stays memory-safe on its own.
#pragma once

#include <string>

#include "ggml-cpp.h"
#include "napi-common.h"

namespace leanvision {

// What the vision stage needs to know about the mmproj; src/mmproj.ts's VisionContextInfo.
struct VisionLayout {
    int hiddenDim = 0;          // the encoder's width, the projector's input size
    int projectionDim = 0;      // the projector's output size
    int gridRows = 0, gridCols = 0;
    bool hasCls = false;
    int featureLayerIndex = 0;  // the last encoder layer the graph runs (its attention is captured)
};

// An mmproj's GGUF header (metadata and tensor infos, no tensor data).
struct GgufFile {
    std::string path;
    size_t fileSize = 0;
    gguf_context_ptr gguf;
    ggml_context_ptr meta;  // one no-alloc tensor per tensor info

    const ggml_tensor * Tensor(const char * name) const { return ggml_get_tensor(meta.get(), name); }
    // File offset of a tensor's data.
    size_t DataOffset(const char * name) const;
};

// Opens the GGUF header of `path`: INVALID_INPUT when the file is missing or not a GGUF file,
// INVALID_MODEL when ggml cannot read its header.
void OpenGguf(const std::string & path, GgufFile & out);

// Checks mm.0 / mm.2 (weights and biases): present, of types the projector's ops take, with the
// shapes `layout` implies, and their data within the file. INVALID_MODEL otherwise.
void CheckProjectorTensors(const GgufFile & f, const VisionLayout & layout);

}  // namespace leanvision
