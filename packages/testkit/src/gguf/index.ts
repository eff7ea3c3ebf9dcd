// Synthetic LLaVA models in GGUF: a writer, the profiles, and the cached factory.
export { GgmlType, f16ToF32, f32ToF16, decodeValues, encodeValues, ggmlByteSize } from "./numeric.js";
export { GgufValueType, kv, writeGguf, tensorDataBytes } from "./writer.js";
export type { GgufArray, GgufFile, GgufScalar, GgufTensor, GgufValue, TensorSource } from "./writer.js";
export { GGUF_PROFILES, imageTokenGrid } from "./profiles.js";
export type { GgufProfile, GgufProfileName, LanguageModelShape, VisionTowerShape, WeightType } from "./profiles.js";
export { VICUNA_CHAT_TEMPLATE, languageModelFile, mmprojFile, readTokenizerMetadata, vocabPath } from "./llava.js";
export { GGUF_WRITER_VERSION, defaultCacheDir, ensureLlavaGguf, ggufPairDir, readGgufManifest, sampleImagePath } from "./factory.js";
export type { EnsureOptions, GgufManifest, LlavaGgufPair } from "./factory.js";
export { formatBytes, progressBar } from "./progress.js";
export { ensureMtmdCli, mtmdCliDir, runMtmdCli } from "./mtmd-cli.js";
export type { MtmdCliOptions, MtmdCliRun } from "./mtmd-cli.js";
export { parseMtmdLog } from "./mtmd-log.js";
export type { MtmdLogTimings } from "./mtmd-log.js";
export { measurePromptEval } from "./prompt-speed.js";
export type { PromptSpeed } from "./prompt-speed.js";
export {
  TOKENPACKER_PROFILES, ensureTokenPackerProjector, readProjectorStateDict, writeTokenPackerCheckpoint, convertTokenPacker, findPython,
  CHECKPOINT_SCRIPT, CONVERTER_SCRIPT
} from "./tokenpacker.js";
export type { TokenPackerProfile, TokenPackerProfileName, TokenPackerProjectorOptions } from "./tokenpacker.js";
