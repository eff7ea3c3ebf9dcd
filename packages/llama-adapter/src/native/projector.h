// Projector: the mmproj's LLaVA `mlp` projector (mm.0 -> GELU -> mm.2), run natively with ggml on
// whichever tokens a reducer kept. Same ops as llama.cpp's llava graph, on weights loaded from the
// same file.
#pragma once

#include <vector>

#include "ggml-cpp.h"
#include "mmproj.h"

namespace leanvision {

struct Projector {
    // Declared in release order reversed: the buffer is freed first, the backend last.
    ggml_backend_ptr backend;
    ggml_context_ptr weights;
    ggml_backend_buffer_ptr buffer;
    ggml_tensor *w0 = nullptr, *b0 = nullptr, *w2 = nullptr, *b2 = nullptr;
    int nThreads = 1;
    const char * source = "the mmproj's projector";  // names it in NON_FINITE messages

    int InputDim() const { return (int)w0->ne[0]; }
    int OutputDim() const { return (int)w2->ne[1]; }
    void Release();
};

// Loads mm.0 / mm.2 of `f` (checked by CheckProjectorTensors) onto a GPU backend when `useGpu` and
// one is loaded, else the CPU.
void LoadProjector(const GgufFile & f, bool useGpu, int nThreads, Projector & p);

// A GPU backend when `useGpu` and one is loaded, else the vision CPU backend (cpu-backend.h); NATIVE_BUILD when there is none.
ggml_backend_t InitProjectorBackend(bool useGpu);

// Copies the tensors `names` of `f` (already checked) into `weights` / `buffer` on `backend`; `out[i]`
// is the loaded tensor of names[i], named so.
void LoadTensors(const GgufFile & f, const std::vector<const char *> & names, ggml_backend_t backend, ggml_context_ptr & weights,
                 ggml_backend_buffer_ptr & buffer, std::vector<ggml_tensor *> & out);

// [numTokens x InputDim()] -> [numTokens x OutputDim()]; NON_FINITE if an output is NaN or infinite.
std::vector<float> RunProjector(const Projector & p, const float * hidden, int numTokens);

// Runs the graph of `out` (built in `ctx`, no-alloc) on `backend` with `data` in `input`; returns
// `out` as [rows x ne0] floats, NON_FINITE (naming `source`) if any is NaN or infinite.
std::vector<float> ComputeProjection(ggml_backend_t backend, int nThreads, ggml_context * ctx, ggml_tensor * input, const float * data,
                                     ggml_tensor * out, const char * source);

// NON_FINITE naming the first NaN or infinity in `embeddings` ([n x rowLength]), a projector's output;
// `source` names who produced it.
void CheckEmbeddingsFinite(const std::vector<float> & embeddings, int rowLength, const char * source);

}  // namespace leanvision
