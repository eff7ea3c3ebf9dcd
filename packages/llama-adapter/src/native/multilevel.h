// Multi-level capture: the outputs of several encoder layers (the llava graph's `layer_out-<il>`,
// [dim, tokens]) copied out during an encode, for a projector that reads more than the feature
// layer (TokenPacker: CLIP hidden states 12, 16, 22 and 23, i.e. layer_out-11, -15, -21, -22).
// The capture callback (capture.cpp) asks WantsLevel / calls ReadLevel; Encode calls FinishLevels.
#pragma once

#include "capture.h"

namespace leanvision {

// True when `t` is the output of one of c.levelLayers.
bool WantsLevel(const ggml_tensor * t, const Capture & c);

// Copies the layer output `t` into c.levels.
void ReadLevel(const ggml_tensor * t, Capture & c);

// Checks every requested layer was seen with the feature layer's shape and concatenates them per
// token into c.multiLevel ([numTokens x levels*dim], levels in request order); ENCODE_FAILED otherwise.
void FinishLevels(Capture & c);

}  // namespace leanvision
