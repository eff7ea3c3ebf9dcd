// @leanvision/llama-adapter: LLaVA image input for node-llama-cpp, with LeanVision's reducers.

// The runtime contract (see @leanvision/core's VisionRuntime).
export { openVisionRuntime, defaultThreads } from "./runtime.js";
export type { OpenLlamaRuntimeOptions, LlamaVisionRuntime } from "./runtime.js";

// The vision stage: loading an mmproj and encoding images into reduced embeddings.
export { loadVisionModel, LlamaVisionModel } from "./vision-model.js";
export { decodeImage, DEFAULT_MAX_PIXELS } from "@leanvision/image";
export type { EncodedImage, EncodeOptions, ImageInput, LoadVisionModelOptions, RawRgbImage } from "./vision-model.js";
export { ImageCache, DEFAULT_IMAGE_CACHE_BYTES } from "./image-cache.js";
export { binariesInUse, loadNativeBinding } from "./native-binding.js";
export type { BinariesInUse, DecodeEmbeddings, NativeBinding, NativeVisionFeatures, ProjectorFileHandle, VisionContextHandle, VisionContextInfo } from "./native-binding.js";
export { inspectProjectorFile, PROJECTOR_FILE_ARCHITECTURE } from "./projector-file.js";
export type { ProjectorFileInfo, MlpProjectorFileInfo, TokenPackerProjectorFileInfo } from "./projector-file.js";

// Chat with images: placeholder tokens + embedding injection into node-llama-cpp's own context.
export { VisionChatSession } from "./chat-session.js";
export type { VisionChatSessionOptions, VisionPromptOptions, LlamaVisionTurn } from "./chat-session.js";
export { SequenceInjector, createInjectedImage, isPlaceholderToken, replaceMarkers, PLACEHOLDER_BASE } from "./injection.js";
export type { DecodeEvent, InjectedImage } from "./injection.js";
