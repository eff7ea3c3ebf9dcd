#include "multilevel.h"

#include <cstdlib>
#include <cstring>

#include "ggml-backend.h"
#include "napi-common.h"

namespace leanvision {

namespace {

// The <il> of a "layer_out-<il>" tensor, or -1.
int LayerOutIndex(const ggml_tensor * t) {
    static const char prefix[] = "layer_out-";
    if (std::strncmp(t->name, prefix, sizeof(prefix) - 1) != 0) return -1;
    char * end = nullptr;
    const long il = std::strtol(t->name + sizeof(prefix) - 1, &end, 10);
    return end && *end == '\0' ? (int)il : -1;
}

}  // namespace

bool WantsLevel(const ggml_tensor * t, const Capture & c) {
    if (c.levelLayers.empty()) return false;
    const int il = LayerOutIndex(t);
    if (il < 0) return false;
    for (int l : c.levelLayers) if (l == il) return true;
    return false;
}

void ReadLevel(const ggml_tensor * t, Capture & c) {
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) {
        c.error = std::string("captured tensor ") + t->name + " is not contiguous F32";
        return;
    }
    const int il = LayerOutIndex(t);
    c.levels.resize(c.levelLayers.size());
    c.levelShapes.resize(c.levelLayers.size(), {0, 0});
    for (size_t i = 0; i < c.levelLayers.size(); i++) {
        if (c.levelLayers[i] != il) continue;
        c.levels[i].resize(ggml_nelements(t));
        ggml_backend_tensor_get(t, c.levels[i].data(), 0, ggml_nbytes(t));
        c.levelShapes[i] = {(int)t->ne[0], (int)(ggml_nelements(t) / t->ne[0])};
    }
}

void FinishLevels(Capture & c) {
    if (c.levelLayers.empty()) return;
    const size_t n = c.levelLayers.size();
    for (size_t i = 0; i < n; i++) {
        if (i >= c.levels.size() || c.levels[i].empty()) {
            throw CodedError("ENCODE_FAILED", "the output of encoder layer " + std::to_string(c.levelLayers[i]) +
                                                  " (layer_out-" + std::to_string(c.levelLayers[i]) + ") was not seen during the encode; "
                                                  "the mmproj's graph does not run that layer");
        }
        if (c.levelShapes[i].first != c.dim || c.levelShapes[i].second != c.numTokens) {
            throw CodedError("ENCODE_FAILED", "the output of encoder layer " + std::to_string(c.levelLayers[i]) + " is " +
                                                  std::to_string(c.levelShapes[i].first) + " x " + std::to_string(c.levelShapes[i].second) +
                                                  ", not the feature layer's " + std::to_string(c.dim) + " x " + std::to_string(c.numTokens));
        }
    }
    const size_t dim = (size_t)c.dim, width = n * dim;
    c.multiLevelDim = (int)width;
    c.multiLevel.assign((size_t)c.numTokens * width, 0.0f);
    for (size_t tok = 0; tok < (size_t)c.numTokens; tok++)
        for (size_t i = 0; i < n; i++) std::memcpy(&c.multiLevel[tok * width + i * dim], &c.levels[i][tok * dim], dim * sizeof(float));
    c.levels.clear();
}

}  // namespace leanvision
