// The runtime contract (core's VisionRuntime) over node-llama-cpp: one model, one mmproj, a context
// per chat. The examples and benchmarks use only this interface.
import { availableParallelism } from "node:os";
import { LeanVisionError, toReducerSpec } from "@leanvision/core";
import type { ImageInput, ReducerInput, VisionChatOptions, VisionRuntime } from "@leanvision/core";
import type { Llama, LlamaContext, LlamaModel } from "node-llama-cpp";
import { VisionChatSession } from "./chat-session.js";
import { binariesInUse } from "./native-binding.js";
import { loadVisionModel, type LlamaVisionModel } from "./vision-model.js";

export interface OpenLlamaRuntimeOptions {
  /** The language model GGUF. */
  modelPath: string;
  /** Its mmproj GGUF. */
  mmprojPath: string;
  /** A LeanVision projector file (TokenPacker, or an mlp replacing the mmproj's); see loadVisionModel. */
  projectorPath?: string;
  /**
   * CPU threads for the language model and the vision encoder. Default: all cores but one
   * (node-llama-cpp's own default of 4 oversubscribes small machines: minutes instead of seconds on 2 cores).
   */
  threads?: number;
  /** Largest context per chat (default 4096; smaller if the model was trained with less). */
  contextSize?: number;
  /** Bound of the image cache chats share (default 256 MiB); 0 turns it off (benchmarks). */
  imageCacheBytes?: number;
  /** An already loaded `await getLlama(...)`; default: node-llama-cpp's prebuilt binaries, no source build. */
  llama?: Llama;
  /**
   * Pipelined prefill (VisionChatSessionOptions.pipeline): tiles encode while earlier tiles' embeddings
   * prefill, the threads split between the two (vision ceil(threads / 2), language model the rest, at
   * least one each). Default false: every stage gets all the threads, one after the other.
   */
  pipeline?: boolean;
}

/** All cores but one: ggml's threads spin while another process holds a core. */
export function defaultThreads(): number {
  return Math.max(1, availableParallelism() - 1);
}

export interface LlamaVisionRuntime extends VisionRuntime {
  readonly llama: Llama;
  readonly model: LlamaModel;
  readonly vision: LlamaVisionModel;
  createChat(options?: VisionChatOptions): Promise<VisionChatSession>;
}

/** Loads a LLaVA GGUF pair into node-llama-cpp and returns the runtime contract over it. */
export async function openVisionRuntime(options: OpenLlamaRuntimeOptions): Promise<LlamaVisionRuntime> {
  const { modelPath, mmprojPath, projectorPath, threads = defaultThreads(), contextSize = 4096, imageCacheBytes, pipeline = false } = options ?? ({} as OpenLlamaRuntimeOptions);
  if (typeof modelPath !== "string" || typeof mmprojPath !== "string") {
    throw new LeanVisionError("INVALID_INPUT", "openVisionRuntime({ modelPath, mmprojPath }): pass the language model GGUF and its mmproj GGUF");
  }
  if (!Number.isInteger(threads) || threads < 1) throw new LeanVisionError("INVALID_INPUT", `threads must be a positive integer (got ${threads})`);
  const visionThreads = pipeline ? Math.ceil(threads / 2) : threads;
  const contextThreads = pipeline ? Math.max(1, threads - visionThreads) : threads;
  const ownsLlama = options.llama === undefined;
  const llama = options.llama ?? (await loadLlama());
  const model = await llama.loadModel({ modelPath });
  let vision: LlamaVisionModel;
  try {
    vision = await loadVisionModel({ llama, model, mmprojPath, projectorPath, threads: visionThreads, imageCacheBytes });
  } catch (error) {
    await model.dispose();
    if (ownsLlama) await llama.dispose();
    throw error;
  }
  const chats = new Map<VisionChatSession, LlamaContext>();
  let disposing: Promise<void> | undefined;

  return {
    runtime: "llama",
    llama,
    model,
    vision,
    description: {
      modelPath,
      mmprojPath,
      projectorPath: projectorPath ?? null,
      threads,
      pipeline,
      imageCacheBytes: vision.imageCache.maxBytes,
      parameters: Number((model.fileInsights as { totalElements?: number }).totalElements ?? 0) || undefined,
      trainContextSize: model.trainContextSize,
      binaries: { ...binariesInUse(llama), vision: vision.backend }
    },
    tile: vision.tileShapes()[0],
    countTextTokens: (text: string) => model.tokenize(text).length,
    countTokens: (image: ImageInput, reducer?: ReducerInput) => vision.countTokens(image, reducer),
    encodeImage: (image: ImageInput, reducer?: ReducerInput) => vision.encodeImage(image, reducer),
    async createChat({ reducer, systemPrompt }: VisionChatOptions = {}) {
      if (disposing) throw new LeanVisionError("DISPOSED", "this runtime is disposed; open a new one with openVisionRuntime()");
      const spec = toReducerSpec(reducer ?? "none"); // a bad reducer fails before a context is made
      const context = await model.createContext({ contextSize: { max: contextSize }, threads: contextThreads });
      const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, reducer: spec, systemPrompt, pipeline });
      chats.set(session, context);
      const dispose = session.dispose.bind(session);
      // Disposing the chat frees its context too.
      session.dispose = async () => {
        await dispose();
        chats.delete(session);
        await context.dispose();
      };
      return session;
    },
    dispose() {
      // Idempotent: a second call waits for the first.
      disposing ??= (async () => {
        for (const session of [...chats.keys()]) await session.dispose();
        vision.dispose();
        await model.dispose();
        if (ownsLlama) await llama.dispose();
      })();
      return disposing;
    }
  };
}

/**
 * Prebuilt binaries only (CPU, or a GPU one the user installed): with build "auto", node-llama-cpp
 * compiles llama.cpp from source for minutes as soon as it sees e.g. Vulkan libraries.
 */
async function loadLlama(): Promise<Llama> {
  const { getLlama } = await import("node-llama-cpp");
  try {
    return await getLlama({ build: "never", logLevel: "error" as never });
  } catch (error) {
    throw new LeanVisionError(
      "NATIVE_BUILD",
      `node-llama-cpp found no prebuilt binary for this machine (${(error as Error).message}); ` +
        "reinstall node-llama-cpp 3.22.1 with its optional @node-llama-cpp/* package for your platform",
      { cause: error }
    );
  }
}
