// Module init of the LeanVision native addon: the vision stage (vision.cpp), embedding injection
// (inject.cpp) and projector files (projector-file.cpp). Loaded by src/native-binding.ts after node-llama-cpp's getLlama(), so the llama/ggml
// shared libraries it links to are the instances node-llama-cpp already loaded.
#include <napi.h>

#include "inject.h"
#include "projector-file.h"
#include "vision.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    RegisterVision(env, exports);
    RegisterInject(env, exports);
    RegisterProjectorFile(env, exports);
    return exports;
}

NODE_API_MODULE(leanvision, Init)
