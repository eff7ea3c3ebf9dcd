export { withLeanVision, LeanVisionLlava, expandImageTokens } from "./lean.js";
export type { WithLeanVisionOptions, EncodedImage, ImageEncodeTimings, DecoderCall, LlavaLikeModel, LlavaLikeProcessor } from "./lean.js";
export { TransformersVisionChat } from "./chat.js";
export type { PromptOptions, TurnRecord, ChatHistoryItem } from "./chat.js";
export { loadImage, type ImageInput } from "./image.js";
export { splitVisionEncoder, type VisionSplit } from "./instrument.js";
