#include "projector.h"

#include <cmath>
#include <fstream>

#include "cpu-backend.h"

namespace leanvision {

namespace {

ggml_backend_t InitBackend(bool useGpu) {
    ggml_backend_t backend = nullptr;
    if (useGpu) {
        backend = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_GPU, nullptr);
        if (!backend) backend = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_IGPU, nullptr);
    }
    if (!backend) backend = InitVisionCpuBackend(1);  // threads: set per run
    if (!backend) throw CodedError("NATIVE_BUILD", "no ggml CPU backend is loaded; load the addon after node-llama-cpp's getLlama()");
    return backend;
}

}  // namespace

void Projector::Release() {
    buffer.reset();
    weights.reset();
    backend.reset();
    w0 = b0 = w2 = b2 = nullptr;
}

void LoadProjector(const GgufFile & f, bool useGpu, int nThreads, Projector & p) {
    p.backend.reset(InitBackend(useGpu));
    p.nThreads = nThreads;
    ggml_init_params params = {ggml_tensor_overhead() * 8, nullptr, true};
    p.weights.reset(ggml_init(params));
    const char * names[4] = {"mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"};
    ggml_tensor ** slots[4] = {&p.w0, &p.b0, &p.w2, &p.b2};
    for (int i = 0; i < 4; i++) {
        *slots[i] = ggml_dup_tensor(p.weights.get(), f.Tensor(names[i]));
        ggml_set_name(*slots[i], names[i]);
    }
    p.buffer.reset(ggml_backend_alloc_ctx_tensors(p.weights.get(), p.backend.get()));
    if (!p.buffer) throw CodedError("INVALID_MODEL", "cannot allocate the projector weights of " + f.path);
    std::ifstream in(f.path, std::ios::binary);
    std::vector<char> bytes;
    for (int i = 0; i < 4; i++) {
        bytes.resize(ggml_nbytes(*slots[i]));
        in.seekg((std::streamoff)f.DataOffset(names[i]));
        in.read(bytes.data(), (std::streamsize)bytes.size());
        if ((size_t)in.gcount() != bytes.size()) throw CodedError("INVALID_MODEL", f.path + " is truncated (tensor " + names[i] + ")");
        ggml_backend_tensor_set(*slots[i], bytes.data(), 0, bytes.size());
    }
}

std::vector<float> RunProjector(const Projector & p, const float * hidden, int numTokens) {
    ggml_init_params params = {ggml_tensor_overhead() * 16 + ggml_graph_overhead(), nullptr, true};
    ggml_context_ptr ctx(ggml_init(params));
    ggml_tensor * x = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, p.InputDim(), numTokens);
    ggml_set_input(x);
    // Same op sequence as clip_graph_llava::build() for PROJECTOR_TYPE_MLP.
    ggml_tensor * cur = ggml_mul_mat(ctx.get(), p.w0, x);
    cur = ggml_add(ctx.get(), cur, p.b0);
    cur = ggml_gelu(ctx.get(), cur);
    cur = ggml_mul_mat(ctx.get(), p.w2, cur);
    cur = ggml_add(ctx.get(), cur, p.b2);
    ggml_set_output(cur);
    ggml_cgraph * gf = ggml_new_graph(ctx.get());
    ggml_build_forward_expand(gf, cur);

    ggml_gallocr_ptr alloc(ggml_gallocr_new(ggml_backend_get_default_buffer_type(p.backend.get())));
    if (!ggml_gallocr_alloc_graph(alloc.get(), gf)) throw CodedError("ENCODE_FAILED", "cannot allocate the projector graph");
    ggml_backend_tensor_set(x, hidden, 0, ggml_nbytes(x));
    SetBackendThreads(p.backend.get(), p.nThreads);
    if (ggml_backend_graph_compute(p.backend.get(), gf) != GGML_STATUS_SUCCESS) throw CodedError("ENCODE_FAILED", "projector compute failed");
    std::vector<float> out((size_t)p.OutputDim() * numTokens);
    ggml_backend_tensor_get(cur, out.data(), 0, ggml_nbytes(cur));
    CheckEmbeddingsFinite(out, p.OutputDim(), "the mmproj's projector");
    return out;
}

void CheckEmbeddingsFinite(const std::vector<float> & embeddings, int rowLength, const char * source) {
    for (size_t i = 0; i < embeddings.size(); i++) {
        const float v = embeddings[i];
        if (std::isfinite(v)) continue;
        throw CodedError("NON_FINITE", std::string(source) + " produced " + (std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity") +
                                           " at token " + std::to_string(i / rowLength) + ", dimension " + std::to_string(i % rowLength) +
                                           ": the mmproj's weights hold NaN or infinite values, or its activations overflow float32; "
                                           "check the mmproj file (no embedding of this image is usable)");
    }
}

}  // namespace leanvision
