// Projector files: a projector loaded from a LeanVision projector file (GGUF written by
// scripts/convert-tokenpacker.py) instead of the mmproj's own. Two kinds:
//   - "mlp": LLaVA's mm.0 -> GELU -> mm.2 (e.g. one fine-tuned for reduced tokens), run like the
//     mmproj's projector (projector.h);
//   - "tokenpacker": TokenPacker's trained projector, run here in ggml on the rows the core
//     `tokenpacker` reducer gathers (one row per region: point query + the region's multi-level
//     states), one embedding per row.
// The file is checked completely by src/projector-file.ts first; the native side re-checks the
// tensors it loads against the layout it is handed (presence, type, shape, data within the file).
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "ggml-cpp.h"
#include "mmproj.h"
#include "projector.h"

namespace leanvision {

// What src/projector-file.ts read from the file (its ProjectorFileInfo).
struct ProjectorFileLayout {
    std::string type;         // "mlp" | "tokenpacker"
    int inputDim = 0;         // the encoder's width (c)
    int outputDim = 0;        // the language model's width
    // tokenpacker
    int scale = 0, heads = 0, multiLevelDim = 0, embedDim = 0, kvHidden = 0, mlpHidden = 0;
    float eps = 1e-6f;

    // Floats per input row: c for mlp, c + scale^2 * multiLevelDim for tokenpacker.
    int RowDim() const { return type == "mlp" ? inputDim : inputDim + scale * scale * multiLevelDim; }
};

// TokenPacker's weights on a backend, by their official state-dict names.
struct TokenPackerModel {
    ggml_backend_ptr backend;
    ggml_context_ptr weights;
    ggml_backend_buffer_ptr buffer;
    std::vector<ggml_tensor *> t;  // in the order of TokenPackerTensorNames()
    // Derived at load: the key projection of clip_attn transposed per head, [headDim, E, heads].
    ggml_context_ptr derived;
    ggml_backend_buffer_ptr derivedBuffer;
    ggml_tensor * keyT = nullptr;
    int nThreads = 1;
};

struct ProjectorFile {
    std::mutex mutex;  // one run at a time; Release() waits for it
    bool freed = false;
    ProjectorFileLayout layout;
    Projector mlp;          // type "mlp"
    TokenPackerModel tokenPacker;  // type "tokenpacker"

    void Release();
};

// Loads `path` (checked against `layout`) onto a GPU backend when `useGpu` and one is loaded, else the CPU.
void LoadProjectorFile(const std::string & path, const ProjectorFileLayout & layout, bool useGpu, int nThreads, ProjectorFile & pf);

// [numRows x layout.RowDim()] -> [numRows x outputDim]; NON_FINITE if an output is NaN or infinite.
std::vector<float> RunProjectorFile(const ProjectorFile & pf, const float * rows, int numRows);

}  // namespace leanvision

void RegisterProjectorFile(Napi::Env env, Napi::Object exports);
