// N-API glue of the vision stage. llama.cpp's mtmd encodes an image while an eval callback copies
// out the projector's input (the feature layer's hidden states), the feature layer's keys and the
// attention scores VisionZip ranks by (capture.cpp); the mmproj's own projector then runs natively (projector.cpp)
// on whichever tokens a reducer kept.
//
// JS surface (see src/native-binding.ts for the types; it checks the mmproj with src/mmproj.ts first):
//   createVisionContext(mmprojPath, layout, { nThreads, useGpu, flashAttention? }) -> { native }
//   encode(handle, rgb, width, height, { capture, levels? }) -> Promise<features[]>  (one per tile, mtmd's order)
//     (levels: encoder layers whose outputs come back too, as multiLevel; multilevel.h)
//   encodeStock(handle, rgb, width, height)                -> Promise<Float32Array>  (plain mtmd output)
//   prepareImage(handle, rgb, width, height)               -> Promise<{ native, tiles }>  (mtmd's tiles, not yet encoded)
//   encodeTile(handle, prepared, index, { capture, levels? }) -> Promise<features>  (one tile, so a caller can pipeline)
//   project(handle, hidden, numTokens)                     -> Promise<Float32Array>
//   freeVisionContext(handle)
// Errors follow napi-common.h: a `code` (INVALID_INPUT, INVALID_MODEL, UNSUPPORTED_MODEL, DISPOSED,
// NON_FINITE, ENCODE_FAILED, ...).
#include "vision.h"

#include <cstring>
#include <memory>

#include "encode.h"
#include "mmproj.h"
#include "napi-common.h"
#include "projector.h"

namespace leanvision {
namespace {

constexpr int kMaxImageSide = 16384;

VisionContext * Unwrap(const Args & args, const Napi::Value & handle) {
    if (!handle.IsObject() || !handle.As<Napi::Object>().Get("native").IsExternal()) {
        args.Fail("expected a vision context handle from createVisionContext()");
    }
    return handle.As<Napi::Object>().Get("native").As<Napi::External<VisionContext>>().Data();
}

VisionContext * UnwrapLive(const Args & args, const Napi::Value & handle) {
    VisionContext * vc = Unwrap(args, handle);
    if (vc->freed) throw CodedError("DISPOSED", "the vision context was freed (the vision model is disposed)");
    return vc;
}

// Packed RGB pixels copied from JS, so a worker owns them off the JS thread.
struct RgbImage {
    std::vector<uint8_t> rgb;
    int width = 0, height = 0;
};

// Arguments 1-3 (rgb: Uint8Array, width, height), checked and copied.
RgbImage ReadRgb(const Args & args) {
    Napi::TypedArray rgb = args.Bytes(1, "rgb");
    RgbImage image;
    image.width = (int)args.Int(2, "width", 1, kMaxImageSide);
    image.height = (int)args.Int(3, "height", 1, kMaxImageSide);
    if (rgb.ByteLength() != (size_t)image.width * image.height * 3) {
        args.Fail("rgb has " + std::to_string(rgb.ByteLength()) + " bytes, expected width*height*3 = " +
                  std::to_string((size_t)image.width * image.height * 3));
    }
    const uint8_t * data = static_cast<const uint8_t *>(rgb.ArrayBuffer().Data()) + rgb.ByteOffset();
    image.rgb.assign(data, data + rgb.ByteLength());
    return image;
}

// The layout src/mmproj.ts found (its VisionContextInfo); CheckProjectorTensors checks it against the file.
VisionLayout ReadLayout(const Args & args, const Napi::Object & info) {
    VisionLayout layout;
    layout.hiddenDim = (int)args.Int(info.Get("hiddenDim"), "layout.hiddenDim", 1, INT32_MAX);
    layout.projectionDim = (int)args.Int(info.Get("projectionDim"), "layout.projectionDim", 1, INT32_MAX);
    layout.gridRows = (int)args.Int(info.Get("gridRows"), "layout.gridRows", 1, 65536);
    layout.gridCols = (int)args.Int(info.Get("gridCols"), "layout.gridCols", 1, 65536);
    layout.featureLayerIndex = (int)args.Int(info.Get("featureLayerIndex"), "layout.featureLayerIndex", 0, 65536);
    layout.hasCls = args.Flag(info, "hasCls", false);
    return layout;
}

Napi::Object FeaturesObject(Napi::Env env, const VisionLayout & vi, CaptureMode mode, const Capture & c) {
    Napi::Object f = Napi::Object::New(env);
    f.Set("hidden", ToFloat32Array(env, c.hidden));
    f.Set("numTokens", c.numTokens);
    f.Set("dim", c.dim);
    f.Set("gridRows", vi.gridRows);
    f.Set("gridCols", vi.gridCols);
    // llama.cpp's llava graph appends CLS after the patches.
    f.Set("clsIndex", vi.hasCls ? Napi::Value(Napi::Number::New(env, c.numTokens - 1)) : env.Null());
    Napi::Int32Array rows = Napi::Int32Array::New(env, c.projectorRows.size());
    if (!c.projectorRows.empty()) std::memcpy(rows.Data(), c.projectorRows.data(), c.projectorRows.size() * sizeof(int32_t));
    f.Set("projectorRows", rows);
    if (mode == CaptureMode::Full) {
        f.Set("attentionScores", ToFloat32Array(env, c.attentionScores));
        if (!c.attention.empty()) f.Set("attention", ToFloat32Array(env, c.attention));  // flash attention off only
        f.Set("heads", c.heads);
        f.Set("keys", ToFloat32Array(env, c.keys));
        f.Set("keyDim", c.keyDim);
    }
    if (!c.multiLevel.empty()) {
        f.Set("multiLevel", ToFloat32Array(env, c.multiLevel));
        f.Set("multiLevelDim", c.multiLevelDim);
    }
    return f;
}

// opts.levels: [il, ...] encoder layers whose outputs (layer_out-<il>) are captured too.
std::vector<int> ReadLevels(const Args & args, const Napi::Object & opts, const VisionLayout & layout) {
    std::vector<int> levels;
    Napi::Value list = opts.Get("levels");
    if (list.IsUndefined()) return levels;
    if (!list.IsArray()) args.Fail("opts.levels must be an array of encoder layer indices");
    Napi::Array a = list.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) levels.push_back((int)args.Int(a.Get(i), "opts.levels[i]", 0, layout.featureLayerIndex));
    return levels;
}

// encode / encodeStock off the JS thread.
class EncodeWorker : public PromiseWorker {
   public:
    EncodeWorker(Napi::Env env, Napi::Object handle, VisionContext * vc, CaptureMode mode)
        : PromiseWorker(env, "LeanVisionEncode", handle, "ENCODE_FAILED"), vc_(vc), mode_(mode) {}

    RgbImage image;
    std::vector<int> levels;  // encoder layers whose outputs are captured too (multilevel.h)

   protected:
    void Run() override {
        std::lock_guard<std::mutex> lock(vc_->mutex);
        if (vc_->freed) throw CodedError("DISPOSED", "the vision context was freed (the vision model is disposed)");
        Encode(*vc_, image.rgb, image.width, image.height, mode_, result_, levels);
    }
    Napi::Value Result(Napi::Env env) override {
        if (mode_ == CaptureMode::None) {
            // The whole image's embeddings, tiles in mtmd's order (what mtmd feeds the language model).
            std::vector<float> all;
            for (const EncodeResult & r : result_) all.insert(all.end(), r.stock.begin(), r.stock.end());
            return ToFloat32Array(env, all);
        }
        Napi::Array tiles = Napi::Array::New(env, result_.size());
        for (size_t i = 0; i < result_.size(); i++) tiles.Set(i, FeaturesObject(env, vc_->layout, mode_, result_[i].capture));
        return tiles;
    }

   private:
    VisionContext * vc_;
    CaptureMode mode_;
    std::vector<EncodeResult> result_;
};

// prepareImage off the JS thread: mtmd's preprocessing (resize, tiles), kept for encodeTile.
class PrepareWorker : public PromiseWorker {
   public:
    PrepareWorker(Napi::Env env, Napi::Object handle, VisionContext * vc)
        : PromiseWorker(env, "LeanVisionPrepare", handle, "ENCODE_FAILED"), vc_(vc), image_(std::make_unique<PreparedImage>()) {}

    RgbImage image;

   protected:
    void Run() override {
        std::lock_guard<std::mutex> lock(vc_->mutex);
        if (vc_->freed) throw CodedError("DISPOSED", "the vision context was freed (the vision model is disposed)");
        Prepare(*vc_, image.rgb, image.width, image.height, CaptureMode::Full, *image_);
    }
    Napi::Value Result(Napi::Env env) override {
        Napi::Object prepared = Napi::Object::New(env);
        prepared.Set("tiles", Napi::Number::New(env, (double)image_->chunks.size()));
        prepared.Set("native", Napi::External<PreparedImage>::New(env, image_.release(), [](Napi::Env, PreparedImage * p) { delete p; }));
        return prepared;
    }

   private:
    VisionContext * vc_;
    std::unique_ptr<PreparedImage> image_;
};

// encodeTile off the JS thread. `prepared` is kept alive (it owns the tile's pixels) until it settles.
class EncodeTileWorker : public PromiseWorker {
   public:
    EncodeTileWorker(Napi::Env env, Napi::Object handle, VisionContext * vc, Napi::Object prepared, PreparedImage * image, size_t tile, CaptureMode mode,
                     std::vector<int> levels)
        : PromiseWorker(env, "LeanVisionEncodeTile", handle, "ENCODE_FAILED"), vc_(vc), image_(image), tile_(tile), mode_(mode), levels_(std::move(levels)) {
        prepared_ = Napi::Persistent(prepared);
    }

   protected:
    void Run() override {
        std::lock_guard<std::mutex> lock(vc_->mutex);
        if (vc_->freed) throw CodedError("DISPOSED", "the vision context was freed (the vision model is disposed)");
        EncodeTile(*vc_, *image_, tile_, mode_, result_, levels_);
    }
    Napi::Value Result(Napi::Env env) override { return FeaturesObject(env, vc_->layout, mode_, result_.capture); }

   private:
    VisionContext * vc_;
    Napi::ObjectReference prepared_;
    PreparedImage * image_;
    size_t tile_;
    CaptureMode mode_;
    std::vector<int> levels_;
    EncodeResult result_;
};

Napi::Value CreateVisionContext(const Napi::CallbackInfo & info) {
    Args args(info, "createVisionContext");
    args.Count(2, 3, "(mmprojPath, layout, { nThreads, useGpu, flashAttention? })");
    const std::string path = args.String(0, "mmprojPath");
    auto vc = std::make_unique<VisionContext>();
    vc->layout = ReadLayout(args, args.Object(1, "layout"));
    int nThreads = 4;
    bool useGpu = false, flashAttention = true;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
        Napi::Object opts = args.Object(2, "opts");
        if (!opts.Get("nThreads").IsUndefined()) nThreads = (int)args.Int(opts.Get("nThreads"), "nThreads", 1, 1024);
        useGpu = args.Flag(opts, "useGpu", false);
        flashAttention = args.Flag(opts, "flashAttention", true);
    }
    {
        GgufFile file;
        OpenGguf(path, file);
        CheckProjectorTensors(file, vc->layout);
        LoadProjector(file, useGpu, nThreads, vc->projector);
    }
    InitMtmd(*vc, path, nThreads, useGpu, flashAttention);

    Napi::Object handle = Napi::Object::New(info.Env());
    // The External's finalizer frees native memory if JS drops the handle without freeVisionContext().
    handle.Set("backend", vc->backend);
    handle.Set("native", Napi::External<VisionContext>::New(info.Env(), vc.release(), [](Napi::Env, VisionContext * p) { delete p; }));
    return handle;
}

// encode / encodeStock: (handle, rgb, width, height[, opts])
Napi::Value QueueEncode(const Napi::CallbackInfo & info, const char * function, CaptureMode mode) {
    Args args(info, function);
    VisionContext * vc = UnwrapLive(args, info[0]);
    args.Count(4, 5, "(handle, rgb: Uint8Array, width, height[, opts])");
    RgbImage image = ReadRgb(args);
    std::vector<int> levels;
    if (mode != CaptureMode::None && info.Length() > 4 && !info[4].IsUndefined()) {
        Napi::Object opts = args.Object(4, "opts");
        if (!args.Flag(opts, "capture", true)) mode = CaptureMode::Hidden;
        levels = ReadLevels(args, opts, vc->layout);
    }
    auto worker = std::make_unique<EncodeWorker>(info.Env(), info[0].As<Napi::Object>(), vc, mode);
    worker->levels = std::move(levels);
    worker->image = std::move(image);
    return worker.release()->Start();
}

Napi::Value EncodeJs(const Napi::CallbackInfo & info) { return QueueEncode(info, "encode", CaptureMode::Full); }

// prepareImage: (handle, rgb, width, height) -> Promise<{ native, tiles }>
Napi::Value PrepareImageJs(const Napi::CallbackInfo & info) {
    Args args(info, "prepareImage");
    VisionContext * vc = UnwrapLive(args, info[0]);
    args.Count(4, 4, "(handle, rgb: Uint8Array, width, height)");
    auto worker = std::make_unique<PrepareWorker>(info.Env(), info[0].As<Napi::Object>(), vc);
    worker->image = ReadRgb(args);
    return worker.release()->Start();
}

// encodeTile: (handle, prepared, index, { capture }) -> Promise<features>
Napi::Value EncodeTileJs(const Napi::CallbackInfo & info) {
    Args args(info, "encodeTile");
    VisionContext * vc = UnwrapLive(args, info[0]);
    args.Count(3, 4, "(handle, prepared, index[, { capture }])");
    if (!info[1].IsObject() || !info[1].As<Napi::Object>().Get("native").IsExternal()) args.Fail("expected a prepared image from prepareImage()");
    Napi::Object prepared = info[1].As<Napi::Object>();
    PreparedImage * image = prepared.Get("native").As<Napi::External<PreparedImage>>().Data();
    const size_t tile = (size_t)args.Int(2, "index", 0, (int64_t)image->chunks.size() - 1);
    CaptureMode mode = CaptureMode::Full;
    std::vector<int> levels;
    if (info.Length() > 3 && !info[3].IsUndefined()) {
        Napi::Object opts = args.Object(3, "opts");
        if (!args.Flag(opts, "capture", true)) mode = CaptureMode::Hidden;
        levels = ReadLevels(args, opts, vc->layout);
    }
    return (new EncodeTileWorker(info.Env(), info[0].As<Napi::Object>(), vc, prepared, image, tile, mode, std::move(levels)))->Start();
}

Napi::Value EncodeStockJs(const Napi::CallbackInfo & info) { return QueueEncode(info, "encodeStock", CaptureMode::None); }

Napi::Value ProjectJs(const Napi::CallbackInfo & info) {
    Args args(info, "project");
    VisionContext * vc = UnwrapLive(args, info[0]);
    args.Count(3, 3, "(handle, hidden: Float32Array, numTokens)");
    const int n = (int)args.Int(2, "numTokens", 1, INT32_MAX);
    auto input = std::make_shared<std::vector<float>>(args.Rows(1, "hidden", n, (size_t)vc->projector.InputDim()));
    // Off the JS thread, one encode/project at a time.
    return (new FloatsWorker(info.Env(), "LeanVisionProject", info[0].As<Napi::Object>(), [vc, input, n] {
               std::lock_guard<std::mutex> lock(vc->mutex);
               if (vc->freed) throw CodedError("DISPOSED", "the vision context was freed (the vision model is disposed)");
               return RunProjector(vc->projector, input->data(), n);
           }))->Start();
}

Napi::Value FreeVisionContext(const Napi::CallbackInfo & info) {
    Args args(info, "freeVisionContext");
    VisionContext * vc = Unwrap(args, info[0]);
    std::lock_guard<std::mutex> lock(vc->mutex);  // waits for a running encode
    vc->Release();
    return info.Env().Undefined();
}

}  // namespace
}  // namespace leanvision

void RegisterVision(Napi::Env env, Napi::Object exports) {
    using namespace leanvision;
    exports.Set("createVisionContext", Napi::Function::New(env, Entry<CreateVisionContext>, "createVisionContext"));
    exports.Set("encode", Napi::Function::New(env, Entry<EncodeJs>, "encode"));
    exports.Set("encodeStock", Napi::Function::New(env, Entry<EncodeStockJs>, "encodeStock"));
    exports.Set("prepareImage", Napi::Function::New(env, Entry<PrepareImageJs>, "prepareImage"));
    exports.Set("encodeTile", Napi::Function::New(env, Entry<EncodeTileJs>, "encodeTile"));
    exports.Set("project", Napi::Function::New(env, Entry<ProjectJs>, "project"));
    exports.Set("freeVisionContext", Napi::Function::New(env, Entry<FreeVisionContext>, "freeVisionContext"));
}
