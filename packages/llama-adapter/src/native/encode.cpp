#include "encode.h"

#include <cstdio>
#include <cstdlib>

#include "multilevel.h"
#include "cpu-backend.h"

namespace leanvision {

namespace {

// mtmd/clip log through one callback; keep the last error line so failures can say why, and stay
// quiet otherwise (LEANVISION_NATIVE_LOG=1 prints everything).
std::mutex logMutex;
std::string lastLoggedError;

void OnLog(ggml_log_level level, const char * text, void *) {
    static const bool verbose = std::getenv("LEANVISION_NATIVE_LOG") != nullptr;
    if (verbose) fputs(text, stderr);
    if (level == GGML_LOG_LEVEL_ERROR) {
        std::lock_guard<std::mutex> lock(logMutex);
        lastLoggedError = text;
        while (!lastLoggedError.empty() && (lastLoggedError.back() == '\n' || lastLoggedError.back() == ' ')) lastLoggedError.pop_back();
    }
}

std::string TakeLastError() {
    std::lock_guard<std::mutex> lock(logMutex);
    std::string s = lastLoggedError.empty() ? "no detail logged" : lastLoggedError;
    lastLoggedError.clear();
    return s;
}

// Checks what the capture saw against the mmproj's layout.
void CheckCapture(const VisionContext & vc, CaptureMode mode, const Capture & c) {
    if (c.hidden.empty()) throw CodedError("ENCODE_FAILED", "the projector input was not seen during the encode (unexpected graph)");
    if (mode == CaptureMode::Full) {
        if (c.keys.empty()) throw CodedError("ENCODE_FAILED", "the feature layer's keys (" + c.keyName + ") were not seen during the encode");
        if (c.deepestKeyLayer != vc.layout.featureLayerIndex) {
            throw CodedError("UNSUPPORTED_MODEL", "the graph runs encoder layers up to " + std::to_string(c.deepestKeyLayer) +
                                                      " but the mmproj's metadata says " + std::to_string(vc.layout.featureLayerIndex));
        }
        if (c.attentionScores.size() != (size_t)c.numTokens) {
            throw CodedError("ENCODE_FAILED", "the feature layer's attention scores were not computed (" + c.queryName + " not seen)");
        }
        if (!c.attention.empty() && c.attention.size() != (size_t)c.heads * c.numTokens * c.numTokens) {
            throw CodedError("ENCODE_FAILED", "the feature layer's attention softmax has an unexpected size");
        }
    }
    const int patches = c.numTokens - (vc.layout.hasCls ? 1 : 0);
    if (patches != vc.layout.gridRows * vc.layout.gridCols) {
        throw CodedError("GRID_MISMATCH", "the encoder produced " + std::to_string(patches) + " patch tokens, not the " +
                                               std::to_string(vc.layout.gridRows) + "x" + std::to_string(vc.layout.gridCols) + " grid");
    }
}

}  // namespace

void VisionContext::Release() {
    mtmd.reset();
    projector.Release();
    freed = true;
}

void InitMtmd(VisionContext & vc, const std::string & path, int nThreads, bool useGpu, bool flashAttention) {
    mtmd_log_set(OnLog, nullptr);
    mtmd_context_params params = mtmd_context_params_default();
    params.use_gpu = useGpu;
    params.print_timings = false;
    params.n_threads = nThreads;
    vc.nThreads = nThreads;
    params.warmup = false;
    // mtmd's default (auto: on where the backend supports it). Capture computes the scores it needs
    // from the feature layer's queries and keys; `flashAttention: false` is the reference path.
    params.flash_attn_type = flashAttention ? LLAMA_FLASH_ATTN_TYPE_AUTO : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    if (!useGpu) {
        // The vision graph runs on our build of ggml's CPU backend (cpu-backend.h), in mtmd's device
        // slot; mtmd's default CPU backend (node-llama-cpp's) stays in its scheduler as the fallback.
        std::string why;
        if (ggml_backend_dev_t dev = VisionCpuDevice(nThreads, why)) {
            params.use_gpu = true;
            params.device = dev;
        }
    }
    vc.backend = useGpu ? "gpu" : VisionCpuDescription(nThreads);
    params.cb_eval = OnEval;
    params.cb_eval_user_data = &vc.capture;
    vc.mtmd.reset(mtmd_init_from_file(path.c_str(), nullptr, params));
    if (!vc.mtmd) throw CodedError("INVALID_MODEL", "llama.cpp could not load the mmproj " + path + ": " + TakeLastError());
    if (!mtmd_support_vision(vc.mtmd.get())) throw CodedError("UNSUPPORTED_MODEL", path + " has no vision encoder");
}

void Prepare(VisionContext & vc, const std::vector<uint8_t> & rgb, int width, int height, CaptureMode mode, PreparedImage & out) {
    mtmd::bitmap bitmap(width, height, rgb.data());
    out.chunks.ptr.reset(mtmd_input_chunks_init());
    mtmd_input_part part = {nullptr, bitmap.ptr.get()};
    const mtmd_input_part * parts[1] = {&part};
    if (mtmd_tokenize_from_parts(vc.mtmd.get(), out.chunks.ptr.get(), parts, 1, false) != 0) {
        throw CodedError("IMAGE_DECODE", "mtmd could not preprocess the image: " + TakeLastError());
    }
    // One image chunk per tile: LLaVA-1.5 one; LLaVA-1.6 (pinpoints) the high-resolution tiles
    // row-major, then the overview (mtmd's order; src/vision-model.ts arranges them).
    const size_t tileTokens = (size_t)vc.layout.gridRows * vc.layout.gridCols;
    const size_t n = out.chunks.size();
    if (n == 0) throw CodedError("ENCODE_FAILED", "mtmd made no chunk of the image");
    for (size_t i = 0; i < n; i++) {
        if (mtmd_input_chunk_get_type(out.chunks[i]) != MTMD_INPUT_CHUNK_TYPE_IMAGE ||
            (mode != CaptureMode::None && mtmd_input_chunk_get_n_tokens(out.chunks[i]) != tileTokens)) {
            throw CodedError("UNSUPPORTED_MODEL", "mtmd split the " + std::to_string(width) + "x" + std::to_string(height) + " image into " +
                                                      std::to_string(n) + " chunks of which chunk " + std::to_string(i) +
                                                      " is not one tile of the mmproj's " + std::to_string(vc.layout.gridRows) + "x" +
                                                      std::to_string(vc.layout.gridCols) + " patch grid");
        }
    }
}

void EncodeTile(VisionContext & vc, const PreparedImage & image, size_t tile, CaptureMode mode, EncodeResult & out,
                const std::vector<int> & levelLayers) {
    const mtmd_input_chunk * chunk = image.chunks[tile];
    vc.capture.Begin(mode, vc.layout, vc.nThreads);
    if (mode != CaptureMode::None) vc.capture.levelLayers = levelLayers;
    const int rc = mtmd_encode_chunk(vc.mtmd.get(), chunk);
    out.capture = std::move(vc.capture);
    vc.capture = Capture();
    if (rc != 0) throw CodedError("ENCODE_FAILED", "mtmd_encode_chunk failed on tile " + std::to_string(tile) + ": " + TakeLastError());
    if (!out.capture.error.empty()) throw CodedError("ENCODE_FAILED", out.capture.error);

    out.stockTokens = (int)mtmd_input_chunk_get_n_tokens(chunk);
    if (mode == CaptureMode::None) {
        const float * embd = mtmd_get_output_embd(vc.mtmd.get());
        out.stock.assign(embd, embd + (size_t)out.stockTokens * vc.layout.projectionDim);
        CheckEmbeddingsFinite(out.stock, vc.layout.projectionDim, "mtmd's vision encoder");
        return;
    }
    CheckCapture(vc, mode, out.capture);
    FinishLevels(out.capture);
}

void Encode(VisionContext & vc, const std::vector<uint8_t> & rgb, int width, int height, CaptureMode mode, std::vector<EncodeResult> & out,
            const std::vector<int> & levelLayers) {
    PreparedImage image;
    Prepare(vc, rgb, width, height, mode, image);
    out.clear();
    out.resize(image.chunks.size());
    for (size_t i = 0; i < out.size(); i++) EncodeTile(vc, image, i, mode, out[i], levelLayers);
}

}  // namespace leanvision
