#include "projector.h"

#include <cmath>
#include <fstream>

#include "cpu-backend.h"

namespace leanvision {

ggml_backend_t InitProjectorBackend(bool useGpu) {
    ggml_backend_t backend = nullptr;
    if (useGpu) {
        backend = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_GPU, nullptr);
        if (!backend) backend = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_IGPU, nullptr);
    }
    if (!backend) backend = InitVisionCpuBackend(1);  // threads: set per run
    if (!backend) throw CodedError("NATIVE_BUILD", "no ggml CPU backend is loaded; load the addon after node-llama-cpp's getLlama()");
    return backend;
}

void Projector::Release() {
    buffer.reset();
    weights.reset();
    backend.reset();
    w0 = b0 = w2 = b2 = nullptr;
}

void LoadTensors(const GgufFile & f, const std::vector<const char *> & names, ggml_backend_t backend, ggml_context_ptr & weights,
                 ggml_backend_buffer_ptr & buffer, std::vector<ggml_tensor *> & out) {
    ggml_init_params params = {ggml_tensor_overhead() * (names.size() + 1), nullptr, true};
    weights.reset(ggml_init(params));
    out.clear();
    for (const char * name : names) {
        out.push_back(ggml_dup_tensor(weights.get(), f.Tensor(name)));
        ggml_set_name(out.back(), name);
    }
    buffer.reset(ggml_backend_alloc_ctx_tensors(weights.get(), backend));
    if (!buffer) throw CodedError("INVALID_MODEL", "cannot allocate the projector weights of " + f.path);
    std::ifstream in(f.path, std::ios::binary);
    std::vector<char> bytes;
    for (size_t i = 0; i < names.size(); i++) {
        bytes.resize(ggml_nbytes(out[i]));
        in.seekg((std::streamoff)f.DataOffset(names[i]));
        in.read(bytes.data(), (std::streamsize)bytes.size());
        if ((size_t)in.gcount() != bytes.size()) throw CodedError("INVALID_MODEL", f.path + " is truncated (tensor " + names[i] + ")");
        ggml_backend_tensor_set(out[i], bytes.data(), 0, bytes.size());
    }
}

void LoadProjector(const GgufFile & f, bool useGpu, int nThreads, Projector & p) {
    p.backend.reset(InitProjectorBackend(useGpu));
    p.nThreads = nThreads;
    std::vector<ggml_tensor *> t;
    LoadTensors(f, {"mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"}, p.backend.get(), p.weights, p.buffer, t);
    p.w0 = t[0], p.b0 = t[1], p.w2 = t[2], p.b2 = t[3];
}

std::vector<float> RunProjector(const Projector & p, const float * hidden, int numTokens) {
    ggml_init_params params = {ggml_tensor_overhead() * 16 + ggml_graph_overhead(), nullptr, true};
    ggml_context_ptr ctx(ggml_init(params));
    ggml_tensor * x = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, p.InputDim(), numTokens);
    // Same op sequence as clip_graph_llava::build() for PROJECTOR_TYPE_MLP.
    ggml_tensor * cur = ggml_mul_mat(ctx.get(), p.w0, x);
    cur = ggml_add(ctx.get(), cur, p.b0);
    cur = ggml_gelu(ctx.get(), cur);
    cur = ggml_mul_mat(ctx.get(), p.w2, cur);
    cur = ggml_add(ctx.get(), cur, p.b2);
    return ComputeProjection(p.backend.get(), p.nThreads, ctx.get(), x, hidden, cur, p.source);
}

std::vector<float> ComputeProjection(ggml_backend_t backend, int nThreads, ggml_context * ctx, ggml_tensor * input, const float * data,
                                     ggml_tensor * out, const char * source) {
    ggml_set_input(input);
    ggml_set_output(out);
    ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, out);
    ggml_gallocr_ptr alloc(ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend)));
    if (!ggml_gallocr_alloc_graph(alloc.get(), gf)) throw CodedError("ENCODE_FAILED", std::string("cannot allocate the graph of ") + source);
    ggml_backend_tensor_set(input, data, 0, ggml_nbytes(input));
    SetBackendThreads(backend, nThreads);
    if (ggml_backend_graph_compute(backend, gf) != GGML_STATUS_SUCCESS) throw CodedError("ENCODE_FAILED", std::string(source) + ": compute failed");
    std::vector<float> result(ggml_nelements(out));
    ggml_backend_tensor_get(out, result.data(), 0, ggml_nbytes(out));
    CheckEmbeddingsFinite(result, (int)out->ne[0], source);
    return result;
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
