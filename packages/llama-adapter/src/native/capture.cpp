#include "capture.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "multilevel.h"
#include "ggml-cpp.h"
#include "cpu-backend.h"
#include "mmproj.h"

namespace leanvision {

namespace {

bool ReadTensor(const ggml_tensor * t, std::vector<float> & out, std::string & error) {
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) {
        error = std::string("captured tensor ") + t->name + " is not contiguous F32";
        return false;
    }
    out.resize(ggml_nelements(t));
    ggml_backend_tensor_get(t, out.data(), 0, ggml_nbytes(t));
    return true;
}

// A graph input read by a split on another backend (a GPU) is a scheduler copy named
// "<backend>#<name>#<copy>" (e.g. "Vulkan0#patches#0"), which that split's nodes are rewired to.
bool IsNamed(const ggml_tensor * t, const char * name) {
    if (std::strcmp(t->name, name) == 0) return true;
    const char * first = std::strchr(t->name, '#');
    if (first == nullptr) return false;
    const size_t n = std::strlen(name);
    return std::strncmp(first + 1, name, n) == 0 && first[1 + n] == '#';
}

// llama.cpp's llava graph feeds its projector with get_rows(features, "patches").
bool IsProjectorInput(const ggml_tensor * t) {
    return t->op == GGML_OP_GET_ROWS && t->src[1] != nullptr && IsNamed(t->src[1], "patches");
}

// Qcur-<il>: [headDim, heads, tokens]. With CLS only the CLS query is needed (the llava graph appends
// CLS last), so only that row is copied.
void ReadQueries(const ggml_tensor * t, Capture & c) {
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) {
        c.error = std::string("captured tensor ") + t->name + " is not contiguous F32";
        return;
    }
    const int64_t tokens = t->ne[2];
    const size_t row = (size_t)t->nb[2];
    c.queryTokens = c.hasCls ? 1 : (int)tokens;
    c.queries.resize((size_t)c.queryTokens * t->ne[0] * t->ne[1]);
    ggml_backend_tensor_get(t, c.queries.data(), c.hasCls ? (tokens - 1) * row : 0, (size_t)c.queryTokens * row);
    c.sawQueries = true;
}

// Kcur-<il>: [headDim, heads, tokens] -> keys averaged over heads, [tokens x headDim]; the raw keys
// stay for the scores.
void ReadKeys(const ggml_tensor * t, Capture & c) {
    if (!ReadTensor(t, c.rawKeys, c.error)) return;
    c.keyDim = (int)t->ne[0];
    c.heads = (int)t->ne[1];
    c.keyTokens = (int)t->ne[2];
    const int64_t n = c.keyTokens;
    const std::vector<float> & k = c.rawKeys;
    c.keys.assign(n * c.keyDim, 0.0f);
    for (int64_t tok = 0; tok < n; tok++)
        for (int h = 0; h < c.heads; h++)
            for (int d = 0; d < c.keyDim; d++) c.keys[tok * c.keyDim + d] += k[(tok * c.heads + h) * c.keyDim + d] / c.heads;
    c.sawKeys = true;
}

// Once the feature layer's queries and keys are both in: VisionZip's scores, then the scratch goes.
void ScoreIfReady(Capture & c) {
    if (!c.sawQueries || !c.sawKeys || !c.attentionScores.empty() || !c.error.empty()) return;
    if (c.queries.size() != (size_t)c.queryTokens * c.heads * c.keyDim) {
        c.error = "the feature layer's queries (" + c.queryName + ") and keys (" + c.keyName + ") have different shapes";
        return;
    }
    // clip_graph's kq_scale: 1 / sqrt(head dimension); the llava graph's attention has no mask.
    const float scale = 1.0f / std::sqrt((float)c.keyDim);
    AttentionScores(c.queries.data(), c.queryTokens, c.rawKeys.data(), c.keyTokens, c.heads, c.keyDim, scale, c.threads, c.attentionScores, c.error);
    std::vector<float>().swap(c.queries);
    std::vector<float>().swap(c.rawKeys);
}

void ReadProjectorInput(const ggml_tensor * t, Capture & c) {
    const ggml_tensor * features = t->src[0];
    const ggml_tensor * rows = t->src[1];
    if (!ReadTensor(features, c.hidden, c.error)) return;
    c.dim = (int)features->ne[0];
    c.numTokens = (int)features->ne[1];
    c.projectorRows.resize(ggml_nelements(rows));
    ggml_backend_tensor_get(rows, c.projectorRows.data(), 0, ggml_nbytes(rows));
}

}  // namespace

void Capture::Begin(CaptureMode captureMode, const VisionLayout & layout, int nThreads) {
    *this = Capture();
    mode = captureMode;
    queryName = "Qcur-" + std::to_string(layout.featureLayerIndex);
    keyName = "Kcur-" + std::to_string(layout.featureLayerIndex);
    hasCls = layout.hasCls;
    threads = std::max(1, nThreads);
}

bool OnEval(ggml_tensor * t, bool ask, void * userData) {
    Capture & c = *static_cast<Capture *>(userData);
    if (c.mode == CaptureMode::None) return false;
    const bool full = c.mode == CaptureMode::Full;
    const bool isQueries = full && c.queryName == t->name;
    const bool isKeys = full && c.keyName == t->name;
    // With flash attention off (the reference path) the first SOFT_MAX after the feature layer's
    // Kcur is that layer's attention; with it on there is none.
    const bool isAttention = full && c.sawKeys && c.attention.empty() && t->op == GGML_OP_SOFT_MAX;
    if (ask) {
        if (full && std::strncmp(t->name, "Kcur-", 5) == 0) c.deepestKeyLayer = std::max(c.deepestKeyLayer, std::atoi(t->name + 5));
        return isQueries || isKeys || isAttention || IsProjectorInput(t) || WantsLevel(t, c);
    }
    if (WantsLevel(t, c)) ReadLevel(t, c);
    if (isQueries) {
        ReadQueries(t, c);
        ScoreIfReady(c);
    } else if (isKeys) {
        ReadKeys(t, c);
        ScoreIfReady(c);
    } else if (isAttention) {
        // [keys, queries, heads] in ggml order == [heads x queries x keys] row-major
        ReadTensor(t, c.attention, c.error);
    } else if (IsProjectorInput(t)) {
        ReadProjectorInput(t, c);
    }
    return true;
}

namespace {

// The scores' graph keeps its backend and compute buffer from one encode to the next: a fresh
// buffer each time costs page faults that, on some VMs, rival the product itself. Queries go in
// chunks so that the buffer stays small (~4 MiB of probabilities) whatever the token count.
struct ScoreWorkspace {
    std::mutex mutex;
    int threads = 0;
    ggml_backend_t backend = nullptr;
    ggml_gallocr_t alloc = nullptr;
};

ScoreWorkspace & Workspace() {
    static ScoreWorkspace * workspace = new ScoreWorkspace();  // never freed: lives as long as the process
    return *workspace;
}

constexpr size_t kChunkBytes = 4u << 20;

}  // namespace

bool AttentionScores(const float * q, int queryTokens, const float * k, int keyTokens, int heads, int headDim, float scale, int nThreads,
                     std::vector<float> & scores, std::string & error) {
    ScoreWorkspace & ws = Workspace();
    std::lock_guard<std::mutex> lock(ws.mutex);
    if (ws.backend == nullptr) {
        ws.backend = InitVisionCpuBackend(nThreads);
        if (ws.backend == nullptr) {
            error = "no ggml CPU backend is loaded to compute the attention scores";
            return false;
        }
        ws.alloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(ws.backend));
        ws.threads = nThreads;
    }
    if (ws.threads != nThreads) {
        SetBackendThreads(ws.backend, nThreads);
        ws.threads = nThreads;
    }
    const size_t rowBytes = (size_t)(keyTokens + 15) / 16 * 16 * heads * sizeof(float);
    const int chunk = (int)std::max<size_t>(1, std::min<size_t>((size_t)queryTokens, kChunkBytes / rowBytes));
    // Head-major copies ([heads][tokens][headDim]), the keys padded with zero rows to a multiple of
    // 16 (masked out of the softmax): contiguous operands with such a row count take ggml's fast
    // matmul (llamafile's tinyBLAS) instead of its row-by-row dot products.
    const int paddedKeys = (keyTokens + 15) / 16 * 16;
    auto headMajor = [&](const float * src, int tokens, int t0, int n, int rows) {
        std::vector<float> out((size_t)heads * rows * headDim, 0.0f);
        for (int h = 0; h < heads; h++)
            for (int t = 0; t < n; t++)
                std::memcpy(&out[((size_t)h * rows + t) * headDim], src + ((size_t)(t0 + t) * heads + h) * headDim, headDim * sizeof(float));
        return out;
    };
    const std::vector<float> keys = headMajor(k, keyTokens, 0, keyTokens, paddedKeys);
    std::vector<float> mask;
    std::vector<double> sums(keyTokens, 0.0);
    std::vector<float> copy;
    for (int q0 = 0; q0 < queryTokens; q0 += chunk) {
        const int nq = std::min(chunk, queryTokens - q0);
        const std::vector<float> queries = headMajor(q, queryTokens, q0, nq, nq);
        ggml_init_params params = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
        ggml_context_ptr ctx(ggml_init(params));
        ggml_tensor * qt = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F32, headDim, nq, heads);
        ggml_tensor * kt = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F32, headDim, paddedKeys, heads);
        ggml_tensor * mt = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, paddedKeys, nq);  // 0, or -inf on padding
        ggml_set_input(qt);
        ggml_set_input(kt);
        ggml_set_input(mt);
        // The same ops as clip_graph::build_attn without flash attention (there on permuted views of
        // Qcur/Kcur, no mask): kq = k^T q per head, then the scaled softmax over the keys. [keys, queries, heads].
        ggml_tensor * kq = ggml_mul_mat(ctx.get(), kt, qt);
        ggml_tensor * p = ggml_soft_max_ext_inplace(ctx.get(), kq, mt, scale, 0.0f);
        ggml_set_output(p);
        ggml_cgraph * gf = ggml_new_graph(ctx.get());
        ggml_build_forward_expand(gf, p);
        if (!ggml_gallocr_alloc_graph(ws.alloc, gf)) {
            error = "cannot allocate the attention scores' graph";
            return false;
        }
        ggml_backend_tensor_set(qt, queries.data(), 0, ggml_nbytes(qt));
        ggml_backend_tensor_set(kt, keys.data(), 0, ggml_nbytes(kt));
        mask.assign((size_t)paddedKeys * nq, 0.0f);
        for (int r = 0; r < nq; r++) std::fill(&mask[(size_t)r * paddedKeys + keyTokens], &mask[(size_t)(r + 1) * paddedKeys], -INFINITY);
        ggml_backend_tensor_set(mt, mask.data(), 0, ggml_nbytes(mt));
        if (ggml_backend_graph_compute(ws.backend, gf) != GGML_STATUS_SUCCESS) {
            error = "computing the attention scores failed";
            return false;
        }
        // Sum the rows (one per head and query) of the [rows x keys] probabilities.
        const size_t rows = (size_t)nq * heads;
        const float * probs = static_cast<const float *>(p->data);
        if (!ggml_backend_buffer_is_host(p->buffer)) {
            copy.resize(rows * paddedKeys);
            ggml_backend_tensor_get(p, copy.data(), 0, ggml_nbytes(p));
            probs = copy.data();
        }
        for (size_t r = 0; r < rows; r++) {
            const float * row = probs + r * paddedKeys;
            for (int j = 0; j < keyTokens; j++) sums[j] += row[j];
        }
    }
    scores.assign(sums.begin(), sums.end());
    return true;
}

}  // namespace leanvision
