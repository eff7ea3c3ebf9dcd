#include "capture.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "ggml-backend.h"

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

// [headDim, heads, tokens] -> keys averaged over heads, [tokens x headDim]
void ReadKeys(const ggml_tensor * t, Capture & c) {
    std::vector<float> k;
    if (!ReadTensor(t, k, c.error)) return;
    c.keyDim = (int)t->ne[0];
    c.heads = (int)t->ne[1];
    const int64_t n = t->ne[2];
    c.keys.assign(n * c.keyDim, 0.0f);
    for (int64_t tok = 0; tok < n; tok++)
        for (int h = 0; h < c.heads; h++)
            for (int d = 0; d < c.keyDim; d++) c.keys[tok * c.keyDim + d] += k[(tok * c.heads + h) * c.keyDim + d] / c.heads;
    c.sawKeys = true;
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

void Capture::Begin(CaptureMode captureMode, int featureLayerIndex) {
    *this = Capture();
    mode = captureMode;
    keyName = "Kcur-" + std::to_string(featureLayerIndex);
}

bool OnEval(ggml_tensor * t, bool ask, void * userData) {
    Capture & c = *static_cast<Capture *>(userData);
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
        ReadKeys(t, c);
    } else if (isAttention) {
        // [keys, queries, heads] in ggml order == [heads x queries x keys] row-major
        ReadTensor(t, c.attention, c.error);
    } else if (IsProjectorInput(t)) {
        ReadProjectorInput(t, c);
    }
    return true;
}

}  // namespace leanvision
