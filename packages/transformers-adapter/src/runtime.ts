// The runtime contract (core's VisionRuntime) over transformers.js: one loaded LLaVA model, wrapped
// once; every chat brings its own reducer. The examples and benchmarks use only this interface.
import { countReduced, formatReducerSpec, LeanVisionError, toReducerSpec, type EncodedImage, type ImageInput, type ReducerInput, type VisionChatOptions, type VisionRuntime } from "@leanvision/core";
import { TransformersVisionChat } from "./chat.js";
import { loadImage } from "./image.js";
import { withLeanVision, type LeanVisionLlava } from "./lean.js";

export interface OpenTransformersRuntimeOptions {
  /** A local model folder in the transformers.js layout (config.json, onnx/…). */
  modelPath: string;
  /**
   * transformers.js dtype of the model's ONNX files (default fp32): "fp32", "fp16", "q8", "q4", ... or one
   * per graph, e.g. { vision_encoder: "fp16", embed_tokens: "fp16", decoder_model_merged: "q4" }.
   */
  dtype?: string | Record<string, string>;
  /** Images over this many pixels are refused with IMAGE_TOO_LARGE before they are decoded (default 50 megapixels). */
  maxPixels?: number;
  /** Where the split vision encoder is cached (default $LEANVISION_CACHE_DIR or ~/.cache/leanvision). */
  cacheDir?: string;
  /** onnxruntime intra-op threads of the split vision encoder's sessions (withLeanVision's visionThreads); default: `threads`. */
  visionThreads?: number;
  /**
   * CPU threads of each onnxruntime session transformers.js creates (intra-op; default: onnxruntime's, one per
   * physical core). On a busy or small machine fewer threads prefill faster: every operator waits for its
   * slowest thread, a fixed cost per operator that short (reduced) prompts feel most.
   */
  threads?: number;
  /**
   * A TokenPacker projector file in ONNX (scripts/convert-tokenpacker.py CHECKPOINT --onnx tokenpacker.onnx in the llama
   * adapter): serves the `tokenpacker` reducer (withLeanVision's projectorPath).
   */
  projectorPath?: string;
}

export interface TransformersVisionRuntime extends VisionRuntime {
  readonly lean: LeanVisionLlava;
  createChat(options?: VisionChatOptions): Promise<TransformersVisionChat>;
}

/** Loads a local transformers.js LLaVA folder, wraps it with LeanVision and returns the runtime contract over it. */
export async function openVisionRuntime(options: OpenTransformersRuntimeOptions): Promise<TransformersVisionRuntime> {
  const { modelPath, dtype = "fp32", cacheDir, maxPixels, threads, visionThreads = threads, projectorPath } = options ?? ({} as OpenTransformersRuntimeOptions);
  if (typeof modelPath !== "string" || !modelPath) {
    throw new LeanVisionError("INVALID_INPUT", "openVisionRuntime({ modelPath }): pass a local model folder in the transformers.js layout");
  }
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
    throw new LeanVisionError("INVALID_INPUT", `threads must be a positive whole number, got ${threads}`);
  }
  const { env, AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration } = await import("@huggingface/transformers");
  env.allowRemoteModels = false; // only local folders; nothing is fetched from a hub
  // LLaVA-1.5, LLaVA-OneVision (llava_onevision) and nanoLLaVA (llava_qwen2) all run as transformers.js's LLaVA class.
  const model = await LlavaForConditionalGeneration.from_pretrained(modelPath, {
    local_files_only: true,
    dtype: dtype as never,
    ...(threads ? { session_options: { intraOpNumThreads: threads } } : {})
  });
  const processor = await AutoProcessor.from_pretrained(modelPath, { local_files_only: true });
  // OneVision and nanoLLaVA: AutoProcessor is only the image processor; the tokenizer is loaded on its own.
  const ownTokenizer = processor.tokenizer ? undefined : await AutoTokenizer.from_pretrained(modelPath, { local_files_only: true });
  let lean: LeanVisionLlava;
  try {
    lean = await withLeanVision({ model, processor, tokenizer: ownTokenizer, modelPath, cacheDir, visionThreads, projectorPath });
  } catch (error) {
    await (model as { dispose?: () => Promise<unknown> }).dispose?.();
    throw error;
  }
  const chats = new Set<TransformersVisionChat>();
  let disposing: Promise<void> | undefined;
  const tokenizer = lean.tokenizer;

  /** One image through the processor and the wrapper (no language model). */
  async function encode(image: ImageInput, reducer: ReducerInput = "none"): Promise<EncodedImage> {
    const spec = toReducerSpec(reducer);
    const t0 = performance.now();
    const raw = await loadImage(image, { maxPixels });
    const { pixel_values } = await lean.processor.image_processor(raw);
    const { result: projected, record } = await lean.recorded(spec, () => lean.encodeImage(pixel_values));
    const { reduceMs, projectMs } = record.timings;
    const { features, reduced } = record.images[0];
    const nEmbd = projected.dims.at(-1)!;
    return {
      width: raw.width,
      height: raw.height,
      features,
      reduced,
      embeddings: projected.data as Float32Array,
      numTokens: reduced.numTokens,
      nEmbd,
      reducer: formatReducerSpec(spec),
      // Decode and preprocessing count as encode time, as image decode does in the llama runtime.
      timings: { encodeMs: performance.now() - t0 - reduceMs - projectMs, reduceMs, projectMs },
      fromCache: false
    };
  }

  return {
    runtime: "transformers",
    lean,
    description: { modelPath, dtype, threads: threads ?? null, projectorPath: projectorPath ?? null },
    tile: lean.tileShape,
    countTextTokens: (text: string) => tokenizer.encode(text, { add_special_tokens: false }).length,
    async countTokens(image: ImageInput, reducer?: ReducerInput) {
      const spec = toReducerSpec(reducer ?? "none");
      lean.checkSupported(spec);
      const raw = await loadImage(image, { maxPixels });
      const { pixel_values } = await lean.processor.image_processor(raw);
      const [, , height, width] = pixel_values.dims;
      const patch = lean.model.config.vision_config?.patch_size ?? 14;
      const rows = Math.floor(height / patch), cols = Math.floor(width / patch);
      const cls = lean.split.found.cls ? 0 : null;
      const counted = countReduced([{ numTokens: rows * cols + (cls === null ? 0 : 1), grid: { rows, cols }, clsIndex: cls }], spec);
      return counted ?? (await lean.withReducer(spec, () => lean.prepareImages(pixel_values))).images[0].reduced.numTokens;
    },
    encodeImage: encode,
    async createChat({ reducer, systemPrompt }: VisionChatOptions = {}) {
      if (disposing) throw new LeanVisionError("DISPOSED", "this runtime is disposed; open a new one with openVisionRuntime()");
      const chat = new TransformersVisionChat({ lean, reducer: reducer ?? "none", systemPrompt, maxPixels });
      chats.add(chat);
      const dispose = chat.dispose.bind(chat);
      chat.dispose = async () => {
        chats.delete(chat);
        await dispose();
      };
      return chat;
    },
    dispose() {
      // Idempotent: a second call waits for the first.
      disposing ??= (async () => {
        for (const chat of [...chats]) await chat.dispose();
        await lean.dispose();
        await (model as { dispose?: () => Promise<unknown> }).dispose?.();
      })();
      return disposing;
    }
  };
}
