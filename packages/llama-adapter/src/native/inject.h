#pragma once
#include <napi.h>

// Registers embedding injection (inject.cpp): decodeEmbeddings.
void RegisterInject(Napi::Env env, Napi::Object exports);
