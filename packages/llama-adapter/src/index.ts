// Vision stage (engineer N): loading an mmproj and encoding images into reduced embeddings.
export { loadVisionModel, LlamaVisionModel, decodeImage } from "./vision-model.js";
export type { EncodedImage, ImageInput, LoadVisionModelOptions, RawRgbImage } from "./vision-model.js";
export { loadNativeBinding } from "./native-binding.js";
export type { NativeBinding, NativeVisionFeatures, VisionContextHandle, VisionContextInfo } from "./native-binding.js";
