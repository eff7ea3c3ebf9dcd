#include "mmproj.h"

#include <algorithm>
#include <cstring>
#include <fstream>

namespace leanvision {

namespace {

int64_t GetInt(const GgufFile & f, const char * key, bool required) {
    const gguf_context * g = f.gguf.get();
    int64_t id = gguf_find_key(g, key);
    if (id < 0) {
        if (required) throw CodedError("INVALID_INPUT", f.path + " lacks the key " + key + "; it is not a LLaVA vision mmproj");
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
        default: throw CodedError("INVALID_INPUT", f.path + ": key " + key + " is not an integer");
    }
}

std::string GetString(const GgufFile & f, const char * key) {
    int64_t id = gguf_find_key(f.gguf.get(), key);
    if (id < 0 || gguf_get_kv_type(f.gguf.get(), id) != GGUF_TYPE_STRING) return "";
    return gguf_get_val_str(f.gguf.get(), id);
}

}  // namespace

size_t GgufFile::DataOffset(const char * name) const {
    const int64_t id = gguf_find_tensor(gguf.get(), name);
    if (id < 0) throw CodedError("INVALID_INPUT", path + " lacks the tensor " + name);
    return gguf_get_data_offset(gguf.get()) + gguf_get_tensor_offset(gguf.get(), id);
}

void OpenGguf(const std::string & path, GgufFile & out) {
    out.path = path;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw CodedError("INVALID_INPUT", "mmproj file not found or not readable: " + path);
    char magic[4] = {0, 0, 0, 0};
    in.read(magic, 4);
    if (in.gcount() != 4 || std::memcmp(magic, "GGUF", 4) != 0) {
        throw CodedError("INVALID_INPUT", path + " is not a GGUF file (bad magic); pass the mmproj-*.gguf that belongs to the model");
    }
    ggml_context * meta = nullptr;
    gguf_init_params params = {/*no_alloc*/ true, /*ctx*/ &meta};
    out.gguf.reset(gguf_init_from_file(path.c_str(), params));
    out.meta.reset(meta);
    if (!out.gguf) throw CodedError("INVALID_INPUT", path + " is a truncated or corrupt GGUF file");
}

VisionInfo Inspect(const GgufFile & f) {
    const gguf_context * g = f.gguf.get();
    const std::string & path = f.path;
    if (GetString(f, "general.architecture") != "clip" || gguf_find_key(g, "clip.has_vision_encoder") < 0 ||
        !gguf_get_val_bool(g, gguf_find_key(g, "clip.has_vision_encoder"))) {
        throw CodedError("INVALID_INPUT", path + " is not a vision mmproj (general.architecture != clip or no vision encoder); "
                                                 "pass the model's mmproj-*.gguf, not the language model");
    }
    VisionInfo info;
    info.projectorType = GetString(f, "clip.vision.projector_type");
    if (info.projectorType.empty()) info.projectorType = GetString(f, "clip.projector_type");
    if (info.projectorType != "mlp" || f.Tensor("mm.3.weight") != nullptr) {
        throw CodedError("UNSUPPORTED_MODEL", path + ": projector type '" + info.projectorType +
                                                  (f.Tensor("mm.3.weight") ? " (Yi-style mlp_norm)" : "") +
                                                  "' is not supported; LeanVision supports LLaVA's 'mlp' projector");
    }
    for (const char * name : {"mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias", "v.patch_embd.weight"}) {
        if (!f.Tensor(name)) throw CodedError("INVALID_INPUT", path + " lacks the tensor " + std::string(name));
    }
    info.imageSize = (int)GetInt(f, "clip.vision.image_size", true);
    info.patchSize = (int)GetInt(f, "clip.vision.patch_size", true);
    info.hiddenDim = (int)GetInt(f, "clip.vision.embedding_length", true);
    info.heads = (int)GetInt(f, "clip.vision.attention.head_count", true);
    info.layers = (int)GetInt(f, "clip.vision.block_count", true);
    info.hasCls = f.Tensor("v.class_embd") != nullptr;
    info.projectionDim = (int)f.Tensor("mm.2.weight")->ne[1];
    if (info.patchSize <= 0 || info.imageSize < info.patchSize || info.heads <= 0 || info.hiddenDim % info.heads != 0) {
        throw CodedError("INVALID_INPUT", path + ": inconsistent vision hyperparameters");
    }
    if (f.Tensor("mm.0.weight")->ne[0] != info.hiddenDim) {
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

}  // namespace leanvision
