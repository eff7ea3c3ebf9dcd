#pragma once
#include <napi.h>

// Registers createVisionContext, encode, encodeStock, project, freeVisionContext and visionInfo.
void RegisterVision(Napi::Env env, Napi::Object exports);
