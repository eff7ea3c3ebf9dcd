// Capture: an mtmd eval callback that copies the feature layer out of the vision graph as it is
// computed: the projector's input (hidden states), the feature layer's keys averaged over heads, and
// the attention scores VisionZip ranks by, computed from the feature layer's own queries and keys.
//
// Every layer keeps mtmd's attention kernel (flash attention by default): the scores are one extra
// small product at the feature layer, not the whole attention. Only a context opened with flash
// attention off (the reference path, for tests and debugging) also copies the full softmax.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ggml.h"

namespace leanvision {

struct VisionLayout;

enum class CaptureMode {
    None,    // copy nothing (plain mtmd encode)
    Hidden,  // the projector's input only
    Full     // plus attention scores and head-averaged keys (and the whole softmax, when the graph has one)
};

// What the eval callback copies out during one encode.
struct Capture {
    CaptureMode mode = CaptureMode::None;
    std::string queryName, keyName;  // "Qcur-<il>" / "Kcur-<il>" of the feature layer
    bool hasCls = false;             // llama.cpp's llava graph appends CLS after the patches
    int threads = 1;                 // for the scores' product
    bool sawQueries = false, sawKeys = false;
    int deepestKeyLayer = -1;  // highest <il> of any Kcur-<il> in the graph, to check keyName is the last layer run

    // Results.
    std::vector<float> hidden;
    // [numTokens] VisionZip's ranking: with CLS the CLS query's softmax row, without CLS the softmax's
    // column sums (attention each token receives over all queries); summed over heads.
    std::vector<float> attentionScores;
    std::vector<float> keys;       // [numTokens x keyDim], averaged over heads
    std::vector<float> attention;  // [heads x numTokens x numTokens]; only when flash attention is off
    std::vector<int32_t> projectorRows;
    int numTokens = 0, dim = 0, heads = 0, keyDim = 0;
    std::string error;
    // Multi-level capture (multilevel.h): layer outputs asked for, as read, and concatenated per token.
    std::vector<int> levelLayers;
    std::vector<std::vector<float>> levels;
    std::vector<std::pair<int, int>> levelShapes;
    std::vector<float> multiLevel;
    int multiLevelDim = 0;

    // Scratch between the feature layer's queries and keys: [queryTokens x heads x headDim] (the CLS
    // row only, with CLS) and [tokens x heads x headDim].
    std::vector<float> queries, rawKeys;
    int queryTokens = 0, keyTokens = 0;

    // Resets for one encode of a graph with `layout` (its feature layer, whether it has CLS).
    void Begin(CaptureMode captureMode, const VisionLayout & layout, int nThreads);
};

// ggml_backend_sched_eval_callback; `userData` is the Capture.
bool OnEval(ggml_tensor * t, bool ask, void * userData);

// VisionZip's scores from one layer's queries and keys, as that layer's attention would give them
// (softmax(q.k * scale) with no mask, the llava graph's attention), summed over heads and over the
// `queryTokens` queries given: q [queryTokens x heads x headDim], k [keyTokens x heads x headDim],
// both row-major (ggml's [headDim, heads, tokens]). Runs a small ggml graph on the CPU backend.
// Returns false with `error` set when no CPU backend is available or the compute fails.
bool AttentionScores(const float * q, int queryTokens, const float * k, int keyTokens, int heads, int headDim, float scale, int nThreads,
                     std::vector<float> & scores, std::string & error);

}  // namespace leanvision
