// Capture: an mtmd eval callback that copies the feature layer out of the vision graph as it is
// computed: the projector's input (hidden states), and the feature layer's attention probabilities
// and keys.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ggml.h"

namespace leanvision {

enum class CaptureMode {
    None,    // copy nothing (plain mtmd encode)
    Hidden,  // the projector's input only
    Full     // plus the feature layer's attention and head-averaged keys
};

// What the eval callback copies out during one encode.
struct Capture {
    CaptureMode mode = CaptureMode::None;
    std::string keyName;       // "Kcur-<il>" of the feature layer
    bool sawKeys = false;
    int deepestKeyLayer = -1;  // highest <il> of any Kcur-<il> in the graph, to check keyName is the last layer run
    std::vector<float> hidden, attention, keys;
    std::vector<int32_t> projectorRows;
    int numTokens = 0, dim = 0, heads = 0, keyDim = 0;
    std::string error;
    // Multi-level capture (multilevel.h): layer outputs asked for, as read, and concatenated per token.
    std::vector<int> levelLayers;
    std::vector<std::vector<float>> levels;
    std::vector<std::pair<int, int>> levelShapes;
    std::vector<float> multiLevel;
    int multiLevelDim = 0;

    // Resets for one encode of a graph whose feature layer is `featureLayerIndex`.
    void Begin(CaptureMode captureMode, int featureLayerIndex);
};

// ggml_backend_sched_eval_callback; `userData` is the Capture.
bool OnEval(ggml_tensor * t, bool ask, void * userData);

}  // namespace leanvision
