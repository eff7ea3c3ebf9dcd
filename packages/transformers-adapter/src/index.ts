export { withLeanVision, LeanVisionLlava, expandImageTokens } from "./lean.js";
export type { WithLeanVisionOptions, ReducedImageRecord, CallRecord, ImageEncodeTimings, DecoderCall, LlavaLikeModel, LlavaLikeProcessor } from "./lean.js";
export { TransformersVisionChat } from "./chat.js";
export type { PromptOptions, TurnRecord, ChatHistoryItem, TransformersVisionChatOptions } from "./chat.js";
export { loadImage, type ImageInput } from "./image.js";
export { splitVisionEncoder, type VisionSplit } from "./instrument.js";
export { openVisionRuntime } from "./runtime.js";
export type { OpenTransformersRuntimeOptions, TransformersVisionRuntime } from "./runtime.js";
