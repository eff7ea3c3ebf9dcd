// Encode: one image through llama.cpp's mtmd vision graph, with the feature layer captured (capture.h)
// or mtmd's own output embeddings kept (stock).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "capture.h"
#include "mmproj.h"
#include "mtmd.h"
#include "projector.h"

namespace leanvision {

// A loaded mmproj: mtmd's context plus the native projector. Owned by the JS handle (vision.cpp).
struct VisionContext {
    std::mutex mutex;  // one encode/project at a time; Release() waits for it
    bool freed = false;
    mtmd::context_ptr mtmd;
    VisionLayout layout;  // from src/mmproj.ts, checked against the projector's tensors
    Capture capture;  // cb_eval's user data
    int nThreads = 1;
    std::string backend;  // which backend the vision graph runs on (cpu-backend.h)
    Projector projector;

    // Frees the native memory now (the handle may outlive it); later calls fail with DISPOSED.
    void Release();
};

// Loads `path` into mtmd with its default attention (flash attention auto), or with flash attention
// off when `flashAttention` is false: the reference path, whose capture also copies the whole softmax.
void InitMtmd(VisionContext & vc, const std::string & path, int nThreads, bool useGpu, bool flashAttention);

struct EncodeResult {
    Capture capture;
    std::vector<float> stock;  // mtmd's own output embeddings of the tile (CaptureMode::None)
    int stockTokens = 0;
};

// An image as mtmd preprocessed it: one image chunk per tile, in mtmd's order (LLaVA-1.5 one tile;
// LLaVA-1.6 the high-resolution tiles row-major, then the overview). Independent of the context.
struct PreparedImage {
    mtmd::input_chunks chunks;
};

// Preprocesses packed RGB pixels into tiles (checked to be tiles of the mmproj's grid unless `mode`
// is None). Caller holds vc.mutex.
void Prepare(VisionContext & vc, const std::vector<uint8_t> & rgb, int width, int height, CaptureMode mode, PreparedImage & out);

// Encodes one tile of a prepared image. Caller holds vc.mutex.
// `levelLayers`: encoder layers whose outputs are captured too, concatenated per token into
// out.capture.multiLevel (multilevel.h).
void EncodeTile(VisionContext & vc, const PreparedImage & image, size_t tile, CaptureMode mode, EncodeResult & out,
                const std::vector<int> & levelLayers = {});

// Prepare + every tile, one EncodeResult per tile in mtmd's order. Caller holds vc.mutex.
void Encode(VisionContext & vc, const std::vector<uint8_t> & rgb, int width, int height, CaptureMode mode, std::vector<EncodeResult> & out,
            const std::vector<int> & levelLayers = {});

}  // namespace leanvision
