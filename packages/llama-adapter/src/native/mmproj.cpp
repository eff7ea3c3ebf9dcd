#include "mmproj.h"

#include <cstring>
#include <fstream>

namespace leanvision {

namespace {

std::string Shape(const ggml_tensor * t) {
    return "[" + std::to_string(t->ne[0]) + ", " + std::to_string(t->ne[1]) + ", " + std::to_string(t->ne[2]) + ", " +
           std::to_string(t->ne[3]) + "]";
}

}  // namespace

size_t GgufFile::DataOffset(const char * name) const {
    const int64_t id = gguf_find_tensor(gguf.get(), name);
    if (id < 0) throw CodedError("INVALID_MODEL", path + " lacks the tensor " + name);
    return gguf_get_data_offset(gguf.get()) + gguf_get_tensor_offset(gguf.get(), id);
}

void OpenGguf(const std::string & path, GgufFile & out) {
    out.path = path;
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw CodedError("INVALID_INPUT", "mmproj file not found or not readable: " + path);
    out.fileSize = (size_t)in.tellg();
    in.seekg(0);
    char magic[4] = {0, 0, 0, 0};
    in.read(magic, 4);
    if (in.gcount() != 4 || std::memcmp(magic, "GGUF", 4) != 0) {
        throw CodedError("INVALID_INPUT", path + " is not a GGUF file (bad magic); pass the mmproj-*.gguf that belongs to the model");
    }
    ggml_context * meta = nullptr;
    gguf_init_params params = {/*no_alloc*/ true, /*ctx*/ &meta};
    out.gguf.reset(gguf_init_from_file(path.c_str(), params));
    out.meta.reset(meta);
    if (!out.gguf) throw CodedError("INVALID_MODEL", path + " is a truncated or corrupt GGUF file");
}

void CheckProjectorTensors(const GgufFile & f, const VisionLayout & layout) {
    // mm.0: [hiddenDim -> n], mm.2: [n -> projectionDim]; biases f32.
    const ggml_tensor * w0 = f.Tensor("mm.0.weight");
    const int64_t n = w0 ? w0->ne[1] : 0;
    struct Expected {
        const char * name;
        int64_t ne0, ne1;
        bool bias;
    };
    const Expected expected[4] = {
        {"mm.0.weight", layout.hiddenDim, n, false},
        {"mm.0.bias", n, 1, true},
        {"mm.2.weight", n, layout.projectionDim, false},
        {"mm.2.bias", layout.projectionDim, 1, true},
    };
    for (const Expected & e : expected) {
        const ggml_tensor * t = f.Tensor(e.name);
        if (!t) throw CodedError("INVALID_MODEL", f.path + " lacks the projector tensor " + e.name);
        if (t->ne[0] != e.ne0 || t->ne[1] != e.ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
            throw CodedError("INVALID_MODEL", f.path + ": projector tensor " + e.name + " is " + Shape(t) + ", expected [" +
                                                  std::to_string(e.ne0) + ", " + std::to_string(e.ne1) + ", 1, 1]");
        }
        if (e.bias ? t->type != GGML_TYPE_F32 : ggml_is_quantized(t->type) == false && t->type != GGML_TYPE_F32 &&
                                                     t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16) {
            throw CodedError("INVALID_MODEL", f.path + ": projector tensor " + e.name + " has the type " + ggml_type_name(t->type));
        }
        if (f.DataOffset(e.name) + ggml_nbytes(t) > f.fileSize) {
            throw CodedError("INVALID_MODEL", f.path + " is truncated (the data of " + e.name + " lies past the end of the file)");
        }
    }
}

}  // namespace leanvision
