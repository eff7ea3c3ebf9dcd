export { withLeanVision, LeanVisionLlava, expandImageTokens } from "./lean.js";
export type { WithLeanVisionOptions, ReducedImageRecord, CallRecord, ImageEncodeTimings, DecoderCall, LlavaLikeModel, LlavaLikeProcessor, LlavaLikeTokenizer, SplitInfo } from "./lean.js";
export { TransformersVisionChat } from "./chat.js";
export type { PromptOptions, TurnRecord, ChatHistoryItem, TransformersVisionChatOptions } from "./chat.js";
export { loadImage, type ImageInput, type LoadImageOptions } from "./image.js";
export { splitVisionEncoder, SPLIT_OUTPUTS, type MissingTensor, type SplitOptions, type VisionSplit } from "./instrument.js";
export { openVisionRuntime } from "./runtime.js";
export type { OpenTransformersRuntimeOptions, TransformersVisionRuntime } from "./runtime.js";
export { inspectOnnxProjectorFile, type OnnxProjectorFileInfo } from "./projector-file.js";
