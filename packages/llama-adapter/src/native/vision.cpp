// The vision stage: llama.cpp's mtmd encodes an image while an eval callback copies out the
// projector's input (the feature layer's hidden states), and the feature layer's attention
// probabilities and keys. The mmproj's own projector then runs natively (ggml) on whichever tokens
// a reducer kept.
//
// JS surface (see src/native-binding.ts for the types):
//   createVisionContext(mmprojPath, { nThreads, useGpu, flashAttention? }) -> { native, info }
//   encode(handle, rgb, width, height, { capture })        -> Promise<features>
//   encodeStock(handle, rgb, width, height)                -> Promise<Float32Array>  (plain mtmd output)
//   project(handle, hidden, numTokens)                     -> Promise<Float32Array>
//   freeVisionContext(handle)
// Errors carry a `code` (INVALID_INPUT, UNSUPPORTED_MODEL, DISPOSED, ENCODE_FAILED) that the
// TypeScript side turns into a LeanVisionError.
#include "vision.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"
#include "mtmd.h"

namespace {

// An error with a code the TypeScript side maps to LeanVisionError.
struct CodedError : std::runtime_error {
    std::string code;
    CodedError(std::string code, const std::string & message) : std::runtime_error(message), code(std::move(code)) {}
};

Napi::Error ToJsError(Napi::Env env, const std::string & code, const std::string & message) {
    Napi::Error err = Napi::Error::New(env, message);
    err.Set("code", Napi::String::New(env, code));
    return err;
}

// mtmd/clip log through one callback; keep the last error line so failures can say why, and stay
// quiet otherwise (LEANVISION_NATIVE_LOG=1 prints everything).
std::mutex g_log_mutex;
std::string g_last_error;
void OnLog(ggml_log_level level, const char * text, void *) {
    static const bool verbose = std::getenv("LEANVISION_NATIVE_LOG") != nullptr;
    if (verbose) fputs(text, stderr);
    if (level == GGML_LOG_LEVEL_ERROR) {
        std::lock_guard<std::mutex> lock(g_log_mutex);
        g_last_error = text;
        while (!g_last_error.empty() && (g_last_error.back() == '\n' || g_last_error.back() == ' ')) g_last_error.pop_back();
    }
}
std::string TakeLastError() {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    std::string s = g_last_error.empty() ? "no detail logged" : g_last_error;
    g_last_error.clear();
    return s;
}

struct VisionInfo {
    std::string projectorType;
    int imageSize = 0, patchSize = 0, hiddenDim = 0, heads = 0, projectionDim = 0, layers = 0;
    int featureLayerIndex = 0;  // index of the last encoder layer the graph runs (its attention is captured)
    bool hasCls = false;
    int gridRows = 0, gridCols = 0;
};

enum class CaptureMode { None, Hidden, Full };

// What the eval callback copies out during one encode.
struct Capture {
    CaptureMode mode = CaptureMode::None;
    std::string keyName;  // "Kcur-<il>" of the feature layer
    bool sawKeys = false;
    int deepestKeyLayer = -1;  // highest <il> of any Kcur-<il> in the graph, to check keyName is the last layer run
    std::vector<float> hidden, attention, keys;
    std::vector<int32_t> projectorRows;
    int numTokens = 0, dim = 0, heads = 0, keyDim = 0;
    std::string error;
};

struct Projector {
    ggml_backend_t backend = nullptr;
    ggml_context * weights = nullptr;
    ggml_backend_buffer_t buffer = nullptr;
    ggml_tensor *w0 = nullptr, *b0 = nullptr, *w2 = nullptr, *b2 = nullptr;
    int nThreads = 1;
    ~Projector() { Free(); }
    void Free() {
        if (buffer) ggml_backend_buffer_free(buffer);
        if (weights) ggml_free(weights);
        if (backend) ggml_backend_free(backend);
        buffer = nullptr;
        weights = nullptr;
        backend = nullptr;
    }
};

struct VisionContext {
    std::mutex mutex;  // one encode/project at a time; free waits for it
    bool freed = false;
    mtmd_context * mtmd = nullptr;
    VisionInfo info;
    Capture capture;
    Projector projector;
    int nThreads = 1;
    ~VisionContext() { Release(); }
    void Release() {
        if (mtmd) mtmd_free(mtmd);
        mtmd = nullptr;
        projector.Free();
        freed = true;
    }
};

// ---------------------------------------------------------------------------------------------
// mmproj validation: read the GGUF header ourselves before llama.cpp touches the file.

struct GgufFile {
    gguf_context * gguf = nullptr;
    ggml_context * meta = nullptr;
    ~GgufFile() {
        if (gguf) gguf_free(gguf);
        if (meta) ggml_free(meta);
    }
};

int64_t GetInt(const gguf_context * g, const char * key, bool required, const std::string & path) {
    int64_t id = gguf_find_key(g, key);
    if (id < 0) {
        if (required) throw CodedError("INVALID_INPUT", path + " lacks the key " + key + "; it is not a LLaVA vision mmproj");
        return -1;
    }
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_UINT8: return gguf_get_val_u8(g, id);
        case GGUF_TYPE_INT8: return gguf_get_val_i8(g, id);
        case GGUF_TYPE_UINT16: return gguf_get_val_u16(g, id);
        case GGUF_TYPE_INT16: return gguf_get_val_i16(g, id);
        case GGUF_TYPE_UINT32: return gguf_get_val_u32(g, id);
        case GGUF_TYPE_INT32: return gguf_get_val_i32(g, id);
        case GGUF_TYPE_UINT64: return (int64_t)gguf_get_val_u64(g, id);
        case GGUF_TYPE_INT64: return gguf_get_val_i64(g, id);
        default: throw CodedError("INVALID_INPUT", path + ": key " + key + " is not an integer");
    }
}

std::string GetString(const gguf_context * g, const char * key) {
    int64_t id = gguf_find_key(g, key);
    if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_STRING) return "";
    return gguf_get_val_str(g, id);
}

ggml_tensor * MetaTensor(const GgufFile & f, const char * name) { return ggml_get_tensor(f.meta, name); }

void OpenGguf(const std::string & path, GgufFile & out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw CodedError("INVALID_INPUT", "mmproj file not found or not readable: " + path);
    char magic[4] = {0, 0, 0, 0};
    in.read(magic, 4);
    if (in.gcount() != 4 || std::memcmp(magic, "GGUF", 4) != 0) {
        throw CodedError("INVALID_INPUT", path + " is not a GGUF file (bad magic); pass the mmproj-*.gguf that belongs to the model");
    }
    gguf_init_params params = {/*no_alloc*/ true, /*ctx*/ &out.meta};
    out.gguf = gguf_init_from_file(path.c_str(), params);
    if (!out.gguf) throw CodedError("INVALID_INPUT", path + " is a truncated or corrupt GGUF file");
}

VisionInfo Inspect(const std::string & path, const GgufFile & f) {
    const gguf_context * g = f.gguf;
    if (GetString(g, "general.architecture") != "clip" || gguf_find_key(g, "clip.has_vision_encoder") < 0 ||
        !gguf_get_val_bool(g, gguf_find_key(g, "clip.has_vision_encoder"))) {
        throw CodedError("INVALID_INPUT", path + " is not a vision mmproj (general.architecture != clip or no vision encoder); "
                                                 "pass the model's mmproj-*.gguf, not the language model");
    }
    VisionInfo info;
    info.projectorType = GetString(g, "clip.vision.projector_type");
    if (info.projectorType.empty()) info.projectorType = GetString(g, "clip.projector_type");
    if (info.projectorType != "mlp" || MetaTensor(f, "mm.3.weight") != nullptr) {
        throw CodedError("UNSUPPORTED_MODEL", path + ": projector type '" + info.projectorType +
                                                  (MetaTensor(f, "mm.3.weight") ? " (Yi-style mlp_norm)" : "") +
                                                  "' is not supported; LeanVision supports LLaVA's 'mlp' projector");
    }
    for (const char * name : {"mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias", "v.patch_embd.weight"}) {
        if (!MetaTensor(f, name)) throw CodedError("INVALID_INPUT", path + " lacks the tensor " + std::string(name));
    }
    info.imageSize = (int)GetInt(g, "clip.vision.image_size", true, path);
    info.patchSize = (int)GetInt(g, "clip.vision.patch_size", true, path);
    info.hiddenDim = (int)GetInt(g, "clip.vision.embedding_length", true, path);
    info.heads = (int)GetInt(g, "clip.vision.attention.head_count", true, path);
    info.layers = (int)GetInt(g, "clip.vision.block_count", true, path);
    info.hasCls = MetaTensor(f, "v.class_embd") != nullptr;
    info.projectionDim = (int)MetaTensor(f, "mm.2.weight")->ne[1];
    if (info.patchSize <= 0 || info.imageSize < info.patchSize || info.heads <= 0 || info.hiddenDim % info.heads != 0) {
        throw CodedError("INVALID_INPUT", path + ": inconsistent vision hyperparameters");
    }
    if (MetaTensor(f, "mm.0.weight")->ne[0] != info.hiddenDim) {
        throw CodedError("UNSUPPORTED_MODEL", path + ": the projector's input is not the encoder's hidden size "
                                                  "(multi-layer feature stacks are not supported)");
    }
    info.gridRows = info.gridCols = info.imageSize / info.patchSize;

    // The llava graph runs layers [0, maxFeatureLayer): n_layer-1 by default (LLaVA uses the
    // penultimate layer), or up to the deepest explicit feature layer.
    int maxFeatureLayer = info.layers - 1;
    int64_t fl = gguf_find_key(g, "clip.vision.feature_layer");
    if (fl >= 0 && gguf_get_kv_type(g, fl) == GGUF_TYPE_ARRAY && gguf_get_arr_type(g, fl) == GGUF_TYPE_INT32) {
        const int32_t * layers = (const int32_t *)gguf_get_arr_data(g, fl);
        int deepest = -1;
        for (size_t i = 0; i < gguf_get_arr_n(g, fl); i++) deepest = std::max(deepest, (int)layers[i]);
        if (deepest >= 0) maxFeatureLayer = deepest;
    }
    if (maxFeatureLayer < 1) throw CodedError("UNSUPPORTED_MODEL", path + ": the feature layer runs no encoder layer");
    info.featureLayerIndex = maxFeatureLayer - 1;
    return info;
}

// ---------------------------------------------------------------------------------------------
// Eval callback: copies the tensors of interest as the graph computes them.

bool ReadTensor(const ggml_tensor * t, std::vector<float> & out, std::string & error) {
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) {
        error = std::string("captured tensor ") + t->name + " is not contiguous F32";
        return false;
    }
    out.resize(ggml_nelements(t));
    ggml_backend_tensor_get(t, out.data(), 0, ggml_nbytes(t));
    return true;
}

bool IsProjectorInput(const ggml_tensor * t) {
    return t->op == GGML_OP_GET_ROWS && t->src[1] != nullptr && std::strcmp(t->src[1]->name, "patches") == 0;
}

bool OnEval(ggml_tensor * t, bool ask, void * user_data) {
    Capture & c = *static_cast<Capture *>(user_data);
    if (c.mode == CaptureMode::None) return false;
    const bool full = c.mode == CaptureMode::Full;
    const bool isKeys = full && c.keyName == t->name;
    // The first SOFT_MAX after the feature layer's Kcur is that layer's attention (flash attention is off).
    const bool isAttention = full && c.sawKeys && c.attention.empty() && t->op == GGML_OP_SOFT_MAX;
    if (ask) {
        if (full && std::strncmp(t->name, "Kcur-", 5) == 0) c.deepestKeyLayer = std::max(c.deepestKeyLayer, std::atoi(t->name + 5));
        return isKeys || isAttention || IsProjectorInput(t);
    }

    if (isKeys) {
        // [headDim, heads, tokens] -> keys averaged over heads, [tokens x headDim]
        std::vector<float> k;
        if (!ReadTensor(t, k, c.error)) return true;
        c.keyDim = (int)t->ne[0];
        c.heads = (int)t->ne[1];
        const int64_t n = t->ne[2];
        c.keys.assign(n * c.keyDim, 0.0f);
        for (int64_t tok = 0; tok < n; tok++)
            for (int h = 0; h < c.heads; h++)
                for (int d = 0; d < c.keyDim; d++) c.keys[tok * c.keyDim + d] += k[(tok * c.heads + h) * c.keyDim + d] / c.heads;
        c.sawKeys = true;
    } else if (isAttention) {
        // [keys, queries, heads] in ggml order == [heads x queries x keys] row-major
        ReadTensor(t, c.attention, c.error);
    } else if (IsProjectorInput(t)) {
        const ggml_tensor * features = t->src[0];
        const ggml_tensor * rows = t->src[1];
        if (!ReadTensor(features, c.hidden, c.error)) return true;
        c.dim = (int)features->ne[0];
        c.numTokens = (int)features->ne[1];
        c.projectorRows.resize(ggml_nelements(rows));
        ggml_backend_tensor_get(rows, c.projectorRows.data(), 0, ggml_nbytes(rows));
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Projector: the mmproj's mlp (mm.0 -> GELU -> mm.2), built with the same ggml ops as llama.cpp's
// llava graph, on weights loaded from the same file.

ggml_backend_t InitBackend(bool useGpu) {
    ggml_backend_t backend = nullptr;
    if (useGpu) {
        backend = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_GPU, nullptr);
        if (!backend) backend = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_IGPU, nullptr);
    }
    if (!backend) backend = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    if (!backend) throw CodedError("NATIVE_BUILD", "no ggml CPU backend is loaded; load the addon after node-llama-cpp's getLlama()");
    return backend;
}

void SetThreads(ggml_backend_t backend, int nThreads) {
    ggml_backend_dev_t dev = ggml_backend_get_device(backend);
    ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
    if (!reg) return;
    auto fn = (ggml_backend_set_n_threads_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
    if (fn) fn(backend, nThreads);
}

void LoadProjector(const std::string & path, const GgufFile & f, bool useGpu, Projector & p) {
    p.backend = InitBackend(useGpu);
    ggml_init_params params = {ggml_tensor_overhead() * 8, nullptr, true};
    p.weights = ggml_init(params);
    const char * names[4] = {"mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"};
    ggml_tensor ** slots[4] = {&p.w0, &p.b0, &p.w2, &p.b2};
    for (int i = 0; i < 4; i++) {
        *slots[i] = ggml_dup_tensor(p.weights, MetaTensor(f, names[i]));
        ggml_set_name(*slots[i], names[i]);
    }
    p.buffer = ggml_backend_alloc_ctx_tensors(p.weights, p.backend);
    if (!p.buffer) throw CodedError("INVALID_INPUT", "cannot allocate the projector weights of " + path);
    std::ifstream in(path, std::ios::binary);
    std::vector<char> bytes;
    for (int i = 0; i < 4; i++) {
        const int64_t id = gguf_find_tensor(f.gguf, names[i]);
        const size_t offset = gguf_get_data_offset(f.gguf) + gguf_get_tensor_offset(f.gguf, id);
        bytes.resize(ggml_nbytes(*slots[i]));
        in.seekg((std::streamoff)offset);
        in.read(bytes.data(), (std::streamsize)bytes.size());
        if ((size_t)in.gcount() != bytes.size()) throw CodedError("INVALID_INPUT", path + " is truncated (tensor " + names[i] + ")");
        ggml_backend_tensor_set(*slots[i], bytes.data(), 0, bytes.size());
    }
}

std::vector<float> RunProjector(Projector & p, const float * hidden, int numTokens) {
    const int inDim = (int)p.w0->ne[0];
    const int outDim = (int)p.w2->ne[1];
    ggml_init_params params = {ggml_tensor_overhead() * 16 + ggml_graph_overhead(), nullptr, true};
    std::unique_ptr<ggml_context, decltype(&ggml_free)> ctx(ggml_init(params), ggml_free);
    ggml_tensor * x = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, inDim, numTokens);
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

    std::unique_ptr<ggml_gallocr, decltype(&ggml_gallocr_free)> alloc(
        ggml_gallocr_new(ggml_backend_get_default_buffer_type(p.backend)), ggml_gallocr_free);
    if (!ggml_gallocr_alloc_graph(alloc.get(), gf)) throw CodedError("ENCODE_FAILED", "cannot allocate the projector graph");
    ggml_backend_tensor_set(x, hidden, 0, ggml_nbytes(x));
    SetThreads(p.backend, p.nThreads);
    if (ggml_backend_graph_compute(p.backend, gf) != GGML_STATUS_SUCCESS) throw CodedError("ENCODE_FAILED", "projector compute failed");
    std::vector<float> out((size_t)outDim * numTokens);
    ggml_backend_tensor_get(cur, out.data(), 0, ggml_nbytes(cur));
    return out;
}

// ---------------------------------------------------------------------------------------------
// Encoding through mtmd.

struct EncodeResult {
    Capture capture;
    std::vector<float> stock;  // mtmd's own output embeddings
    int stockTokens = 0;
};

void Encode(VisionContext & vc, const std::vector<uint8_t> & rgb, int width, int height, CaptureMode mode, EncodeResult & out) {
    std::unique_ptr<mtmd_bitmap, decltype(&mtmd_bitmap_free)> bitmap(mtmd_bitmap_init(width, height, rgb.data()), mtmd_bitmap_free);
    std::unique_ptr<mtmd_input_chunks, decltype(&mtmd_input_chunks_free)> chunks(mtmd_input_chunks_init(), mtmd_input_chunks_free);
    mtmd_input_part part = {nullptr, bitmap.get()};
    const mtmd_input_part * parts[1] = {&part};
    if (mtmd_tokenize_from_parts(vc.mtmd, chunks.get(), parts, 1, false) != 0) {
        throw CodedError("IMAGE_DECODE", "mtmd could not preprocess the image: " + TakeLastError());
    }
    if (mtmd_input_chunks_size(chunks.get()) != 1 ||
        mtmd_input_chunk_get_type(mtmd_input_chunks_get(chunks.get(), 0)) != MTMD_INPUT_CHUNK_TYPE_IMAGE) {
        throw CodedError("UNSUPPORTED_MODEL", "mtmd split the image into several chunks; only single-tile LLaVA images are supported");
    }
    const mtmd_input_chunk * chunk = mtmd_input_chunks_get(chunks.get(), 0);

    vc.capture = Capture();
    vc.capture.mode = mode;
    vc.capture.keyName = "Kcur-" + std::to_string(vc.info.featureLayerIndex);
    const int rc = mtmd_encode_chunk(vc.mtmd, chunk);
    out.capture = std::move(vc.capture);
    vc.capture = Capture();
    if (rc != 0) throw CodedError("ENCODE_FAILED", "mtmd_encode_chunk failed: " + TakeLastError());
    if (!out.capture.error.empty()) throw CodedError("ENCODE_FAILED", out.capture.error);

    out.stockTokens = (int)mtmd_input_chunk_get_n_tokens(chunk);
    if (mode == CaptureMode::None) {
        const float * embd = mtmd_get_output_embd(vc.mtmd);
        out.stock.assign(embd, embd + (size_t)out.stockTokens * vc.info.projectionDim);
        return;
    }
    Capture & c = out.capture;
    if (c.hidden.empty()) throw CodedError("ENCODE_FAILED", "the projector input was not seen during the encode (unexpected graph)");
    if (mode == CaptureMode::Full) {
        if (c.keys.empty()) throw CodedError("ENCODE_FAILED", "the feature layer's keys (" + c.keyName + ") were not seen during the encode");
        if (c.deepestKeyLayer != vc.info.featureLayerIndex) {
            throw CodedError("UNSUPPORTED_MODEL", "the graph runs encoder layers up to " + std::to_string(c.deepestKeyLayer) +
                                                      " but the mmproj's metadata says " + std::to_string(vc.info.featureLayerIndex));
        }
        if (c.attention.size() != (size_t)c.heads * c.numTokens * c.numTokens) {
            throw CodedError("ENCODE_FAILED", "the feature layer's attention was not captured (is flash attention on?)");
        }
    }
    const int patches = c.numTokens - (vc.info.hasCls ? 1 : 0);
    if (patches != vc.info.gridRows * vc.info.gridCols) {
        throw CodedError("GRID_MISMATCH", "the encoder produced " + std::to_string(patches) + " patch tokens, not the " +
                                               std::to_string(vc.info.gridRows) + "x" + std::to_string(vc.info.gridCols) + " grid");
    }
}

// ---------------------------------------------------------------------------------------------
// N-API glue.

VisionContext * Unwrap(const Napi::Value & handle) {
    if (!handle.IsObject() || !handle.As<Napi::Object>().Get("native").IsExternal()) {
        throw ToJsError(handle.Env(), "INVALID_INPUT", "expected a vision context handle from createVisionContext()");
    }
    VisionContext * vc = handle.As<Napi::Object>().Get("native").As<Napi::External<VisionContext>>().Data();
    if (vc->freed) throw ToJsError(handle.Env(), "DISPOSED", "the vision context was freed (the vision model is disposed)");
    return vc;
}

Napi::Float32Array ToFloat32Array(Napi::Env env, const std::vector<float> & v) {
    Napi::Float32Array arr = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) std::memcpy(arr.Data(), v.data(), v.size() * sizeof(float));
    return arr;
}

Napi::Value CreateVisionContext(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw ToJsError(env, "INVALID_INPUT", "createVisionContext(mmprojPath, opts): mmprojPath must be a string");
    const std::string path = info[0].As<Napi::String>();
    int nThreads = 4;
    bool useGpu = false, flashAttention = false;
    if (info.Length() > 1 && info[1].IsObject()) {
        Napi::Object opts = info[1].As<Napi::Object>();
        if (opts.Get("nThreads").IsNumber()) nThreads = std::max(1, opts.Get("nThreads").As<Napi::Number>().Int32Value());
        if (opts.Get("useGpu").IsBoolean()) useGpu = opts.Get("useGpu").As<Napi::Boolean>();
        if (opts.Get("flashAttention").IsBoolean()) flashAttention = opts.Get("flashAttention").As<Napi::Boolean>();
    }

    auto vc = std::make_unique<VisionContext>();
    try {
        GgufFile file;
        OpenGguf(path, file);
        vc->info = Inspect(path, file);
        LoadProjector(path, file, useGpu, vc->projector);
    } catch (const CodedError & e) {
        throw ToJsError(env, e.code, e.what());
    }
    vc->nThreads = nThreads;
    vc->projector.nThreads = nThreads;

    mtmd_log_set(OnLog, nullptr);
    mtmd_context_params params = mtmd_context_params_default();
    params.use_gpu = useGpu;
    params.print_timings = false;
    params.n_threads = nThreads;
    params.warmup = false;
    // The attention softmax only exists without flash attention; `flashAttention: true` gives mtmd's
    // default (auto) for a stock-only context, e.g. to measure what capture costs against it.
    params.flash_attn_type = flashAttention ? LLAMA_FLASH_ATTN_TYPE_AUTO : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    params.cb_eval = OnEval;
    params.cb_eval_user_data = &vc->capture;
    vc->mtmd = mtmd_init_from_file(path.c_str(), nullptr, params);
    if (!vc->mtmd) throw ToJsError(env, "INVALID_INPUT", "llama.cpp could not load the mmproj " + path + ": " + TakeLastError());
    if (!mtmd_support_vision(vc->mtmd)) throw ToJsError(env, "INVALID_INPUT", path + " has no vision encoder");

    const VisionInfo & vi = vc->info;
    Napi::Object infoObj = Napi::Object::New(env);
    infoObj.Set("projectorType", vi.projectorType);
    infoObj.Set("imageSize", vi.imageSize);
    infoObj.Set("patchSize", vi.patchSize);
    infoObj.Set("hiddenDim", vi.hiddenDim);
    infoObj.Set("heads", vi.heads);
    infoObj.Set("projectionDim", vi.projectionDim);
    infoObj.Set("hasCls", vi.hasCls);
    infoObj.Set("gridRows", vi.gridRows);
    infoObj.Set("gridCols", vi.gridCols);
    infoObj.Set("layers", vi.layers);
    infoObj.Set("featureLayerIndex", vi.featureLayerIndex);

    Napi::Object handle = Napi::Object::New(env);
    // The External's finalizer frees native memory if JS drops the handle without freeVisionContext().
    handle.Set("native", Napi::External<VisionContext>::New(env, vc.release(), [](Napi::Env, VisionContext * p) { delete p; }));
    handle.Set("info", infoObj);
    return handle;
}

// Runs encode/encodeStock/project off the JS thread; resolves a promise.
class VisionWorker : public Napi::AsyncWorker {
   public:
    enum class Kind { Encode, Stock, Project };
    VisionWorker(Napi::Env env, Napi::Object handle, VisionContext * vc, Kind kind)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), vc_(vc), kind_(kind) {
        handleRef_ = Napi::Persistent(handle);  // keeps the context alive while the worker runs
    }
    Napi::Promise Promise() { return deferred_.Promise(); }

    std::vector<uint8_t> rgb;
    int width = 0, height = 0;
    CaptureMode mode = CaptureMode::Full;
    std::vector<float> input;
    int numTokens = 0;

   protected:
    void Execute() override {
        std::lock_guard<std::mutex> lock(vc_->mutex);
        try {
            if (vc_->freed) throw CodedError("DISPOSED", "the vision context was freed (the vision model is disposed)");
            if (kind_ == Kind::Project) {
                projected_ = RunProjector(vc_->projector, input.data(), numTokens);
            } else {
                Encode(*vc_, rgb, width, height, kind_ == Kind::Stock ? CaptureMode::None : mode, result_);
            }
        } catch (const CodedError & e) {
            code_ = e.code;
            SetError(e.what());
        } catch (const std::exception & e) {
            code_ = "ENCODE_FAILED";
            SetError(e.what());
        }
    }

    void OnOK() override {
        Napi::Env env = Env();
        if (kind_ == Kind::Project) return deferred_.Resolve(ToFloat32Array(env, projected_));
        if (kind_ == Kind::Stock) return deferred_.Resolve(ToFloat32Array(env, result_.stock));
        const Capture & c = result_.capture;
        Napi::Object f = Napi::Object::New(env);
        f.Set("hidden", ToFloat32Array(env, c.hidden));
        f.Set("numTokens", c.numTokens);
        f.Set("dim", c.dim);
        f.Set("gridRows", vc_->info.gridRows);
        f.Set("gridCols", vc_->info.gridCols);
        // llama.cpp's llava graph appends CLS after the patches.
        f.Set("clsIndex", vc_->info.hasCls ? Napi::Value(Napi::Number::New(env, c.numTokens - 1)) : env.Null());
        Napi::Int32Array rows = Napi::Int32Array::New(env, c.projectorRows.size());
        if (!c.projectorRows.empty()) std::memcpy(rows.Data(), c.projectorRows.data(), c.projectorRows.size() * sizeof(int32_t));
        f.Set("projectorRows", rows);
        if (mode == CaptureMode::Full) {
            f.Set("attention", ToFloat32Array(env, c.attention));
            f.Set("heads", c.heads);
            f.Set("keys", ToFloat32Array(env, c.keys));
            f.Set("keyDim", c.keyDim);
        }
        deferred_.Resolve(f);
    }

    void OnError(const Napi::Error & e) override { deferred_.Reject(ToJsError(Env(), code_, e.Message()).Value()); }

   private:
    Napi::Promise::Deferred deferred_;
    Napi::ObjectReference handleRef_;
    VisionContext * vc_;
    Kind kind_;
    std::string code_ = "ENCODE_FAILED";
    EncodeResult result_;
    std::vector<float> projected_;
};

void ReadImageArgs(const Napi::CallbackInfo & info, VisionWorker & w) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[1].IsTypedArray() || !info[2].IsNumber() || !info[3].IsNumber()) {
        throw ToJsError(env, "INVALID_INPUT", "expected (handle, rgb: Uint8Array, width, height)");
    }
    Napi::TypedArray arr = info[1].As<Napi::TypedArray>();
    if (arr.TypedArrayType() != napi_uint8_array && arr.TypedArrayType() != napi_uint8_clamped_array) {
        throw ToJsError(env, "INVALID_INPUT", "rgb must be a Uint8Array of width*height*3 bytes");
    }
    const double width = info[2].As<Napi::Number>().DoubleValue(), height = info[3].As<Napi::Number>().DoubleValue();
    if (!(width >= 1 && height >= 1 && width <= 16384 && height <= 16384) || width != std::floor(width) || height != std::floor(height)) {
        throw ToJsError(env, "INVALID_INPUT", "width and height must be integers in [1, 16384]");
    }
    w.width = (int)width;
    w.height = (int)height;
    if (arr.ByteLength() != (size_t)w.width * w.height * 3) {
        throw ToJsError(env, "INVALID_INPUT", "rgb has " + std::to_string(arr.ByteLength()) + " bytes, expected width*height*3 = " +
                                                  std::to_string((size_t)w.width * w.height * 3));
    }
    const uint8_t * data = static_cast<const uint8_t *>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    w.rgb.assign(data, data + arr.ByteLength());
}

// encode / encodeStock: validate the arguments, then run the worker off the JS thread.
static Napi::Value QueueImageWorker(const Napi::CallbackInfo & info, VisionWorker::Kind kind) {
    VisionContext * vc = Unwrap(info[0]);
    std::unique_ptr<VisionWorker> w(new VisionWorker(info.Env(), info[0].As<Napi::Object>(), vc, kind));
    ReadImageArgs(info, *w);
    if (kind == VisionWorker::Kind::Encode && info.Length() > 4 && info[4].IsObject()) {
        Napi::Value cap = info[4].As<Napi::Object>().Get("capture");
        if (cap.IsBoolean() && !cap.As<Napi::Boolean>().Value()) w->mode = CaptureMode::Hidden;
    }
    Napi::Promise p = w->Promise();
    w.release()->Queue(); // node-addon-api deletes an AsyncWorker when it completes
    return p;
}

Napi::Value EncodeJs(const Napi::CallbackInfo & info) {
    return QueueImageWorker(info, VisionWorker::Kind::Encode);
}

Napi::Value EncodeStockJs(const Napi::CallbackInfo & info) {
    return QueueImageWorker(info, VisionWorker::Kind::Stock);
}

Napi::Value ProjectJs(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    VisionContext * vc = Unwrap(info[0]);
    if (info.Length() < 3 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        !info[2].IsNumber()) {
        throw ToJsError(env, "INVALID_INPUT", "project(handle, hidden: Float32Array, numTokens)");
    }
    Napi::Float32Array hidden = info[1].As<Napi::Float32Array>();
    const double n = info[2].As<Napi::Number>().DoubleValue();
    const size_t inDim = (size_t)vc->info.hiddenDim;
    if (!(n >= 1) || n != std::floor(n) || hidden.ElementLength() != (size_t)n * inDim) {
        throw ToJsError(env, "INVALID_INPUT", "project: hidden must hold numTokens (>= 1) rows of " + std::to_string(inDim) +
                                                  " floats; got " + std::to_string(hidden.ElementLength()) + " floats for numTokens " +
                                                  std::to_string(n));
    }
    for (size_t i = 0; i < hidden.ElementLength(); i++) {
        if (!std::isfinite(hidden[i])) throw ToJsError(env, "NON_FINITE", "project: hidden contains a non-finite value at index " + std::to_string(i));
    }
    auto * w = new VisionWorker(env, info[0].As<Napi::Object>(), vc, VisionWorker::Kind::Project);
    w->input.assign(hidden.Data(), hidden.Data() + hidden.ElementLength());
    w->numTokens = (int)n;
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
}

Napi::Value FreeVisionContext(const Napi::CallbackInfo & info) {
    if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().Get("native").IsExternal()) {
        throw ToJsError(info.Env(), "INVALID_INPUT", "freeVisionContext(handle): expected a vision context handle");
    }
    VisionContext * vc = info[0].As<Napi::Object>().Get("native").As<Napi::External<VisionContext>>().Data();
    std::lock_guard<std::mutex> lock(vc->mutex);  // waits for a running encode
    vc->Release();
    return info.Env().Undefined();
}

}  // namespace

void RegisterVision(Napi::Env env, Napi::Object exports) {
    exports.Set("createVisionContext", Napi::Function::New(env, CreateVisionContext));
    exports.Set("encode", Napi::Function::New(env, EncodeJs));
    exports.Set("encodeStock", Napi::Function::New(env, EncodeStockJs));
    exports.Set("project", Napi::Function::New(env, ProjectJs));
    exports.Set("freeVisionContext", Napi::Function::New(env, FreeVisionContext));
}
