#pragma once
#include <napi.h>

// Registers the vision stage's N-API functions (vision.cpp): createVisionContext, encode,
// encodeStock, project and freeVisionContext.
void RegisterVision(Napi::Env env, Napi::Object exports);
