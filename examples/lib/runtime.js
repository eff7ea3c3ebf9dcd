// One small interface over both runtimes, so the benchmark, the demo and the web app share it:
//   const rt = await openRuntime({ runtime, profile | modelPath (+ mmprojPath) });
//   const chat = await rt.newChat(reducerSpec);   // a fresh context / KV cache
//   await chat.prompt(text, { images, maxTokens, onTextChunk });  chat.lastTurn; chat.dispose();
import { availableParallelism } from "node:os";
import { LeanVisionError } from "@leanvision/core";

/**
 * All cores but one. ggml's threads wait for each other at every op; when another process holds a
 * core they spin: on a busy 2-core machine two threads made prefill several times slower than one.
 */
export function defaultThreads() {
  return Math.max(1, availableParallelism() - 1);
}

/**
 * source: { runtime: "llama"|"transformers", profile?: string, modelPath?: string, mmprojPath?: string,
 *           threads?: number, onProgress?: (done, total) => void }
 * profile = a synthetic model written by the testkit; threads = CPU threads (llama; default: all cores but one).
 */
export async function openRuntime(source) {
  if (source.runtime === "llama") return openLlama(source);
  if (source.runtime === "transformers") return openTransformers(source);
  throw new LeanVisionError("INVALID_INPUT", `unknown runtime "${source.runtime}"; use "llama" or "transformers"`);
}

async function openLlama({ profile, modelPath, mmprojPath, threads = defaultThreads(), onProgress }) {
  if (profile) {
    const { ensureLlavaGguf } = await import("@leanvision/testkit");
    ({ modelPath, mmprojPath } = await ensureLlavaGguf(profile, { onProgress }));
  }
  const { getLlama } = await import("node-llama-cpp");
  const { loadVisionModel, VisionChatSession } = await import("@leanvision/llama-adapter");
  const llama = await loadLlama(getLlama);
  const model = await llama.loadModel({ modelPath });
  const vision = await loadVisionModel({ llama, model, mmprojPath, threads });
  const contexts = new Set();

  return {
    runtime: "llama",
    profile: profile ?? null,
    model: { modelPath, mmprojPath, parameters: Number(model.fileInsights.totalElements ?? 0) || undefined, trainContextSize: model.trainContextSize },
    modelPath,
    mmprojPath,
    threads,
    countTokens: (text) => model.tokenize(text).length,
    async newChat(reducer, { systemPrompt } = {}) {
      const context = await model.createContext({ contextSize: { max: 4096 }, threads });
      contexts.add(context);
      const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, systemPrompt });
      return {
        reducer,
        // The vision model is shared by all chats; set this chat's reducer before it encodes an image.
        prompt(text, options = {}) {
          vision.reducer = reducer;
          return session.prompt(text, options);
        },
        get lastTurn() {
          return session.lastTurn;
        },
        get turns() {
          return session.turns;
        },
        dispose() {
          session.dispose();
          contexts.delete(context);
          return context.dispose();
        }
      };
    },
    async dispose() {
      for (const context of contexts) await context.dispose();
      vision.dispose();
      await model.dispose();
      await llama.dispose();
    }
  };
}

/**
 * One untimed image turn per reducer, so that one-off costs (weights paged in, compute graphs
 * allocated, threads spun up) land in no measured turn and in neither side of a comparison.
 */
export async function warmUp(rt, image, reducers) {
  for (const reducer of reducers) {
    const chat = await rt.newChat(reducer);
    try {
      await chat.prompt("Hi", { images: [image], maxTokens: 1, temperature: 0 });
    } finally {
      await chat.dispose();
    }
  }
}

/**
 * Prebuilt binaries only (CPU, or a GPU one the user installed): with build "auto", node-llama-cpp
 * compiles llama.cpp from source for ten minutes or more as soon as it sees e.g. Vulkan libraries.
 */
async function loadLlama(getLlama) {
  try {
    return await getLlama({ build: "never", logLevel: "error" });
  } catch (error) {
    throw new LeanVisionError(
      "NATIVE_BUILD",
      `node-llama-cpp found no prebuilt binary for this machine (${error.message}); ` +
        "reinstall node-llama-cpp 3.22.1 with its optional @node-llama-cpp/* package for your platform",
      { cause: error }
    );
  }
}

async function openTransformers({ profile, modelPath, onProgress }) {
  let dir = modelPath;
  if (profile) {
    const { ensureLlavaOnnx } = await import("@leanvision/testkit");
    ({ dir } = await ensureLlavaOnnx(profile, { onProgress }));
  }
  const { env, AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration } = await import("@huggingface/transformers");
  const { withLeanVision, TransformersVisionChat } = await import("@leanvision/transformers-adapter");
  env.allowRemoteModels = false; // only local folders; nothing is fetched from a hub
  const model = await LlavaForConditionalGeneration.from_pretrained(dir, { local_files_only: true, dtype: "fp32" });
  const processor = await AutoProcessor.from_pretrained(dir, { local_files_only: true });
  const tokenizer = processor.tokenizer ?? (await AutoTokenizer.from_pretrained(dir, { local_files_only: true }));
  const leanByReducer = new Map();

  // One wrapper per reducer; they share the model's split vision encoder.
  async function leanFor(reducer) {
    const key = JSON.stringify(reducer);
    if (!leanByReducer.has(key)) leanByReducer.set(key, await withLeanVision({ model, processor, reducer, modelPath: dir }));
    return leanByReducer.get(key);
  }

  return {
    runtime: "transformers",
    profile: profile ?? null,
    model: { dir },
    modelPath: dir,
    mmprojPath: null,
    threads: null,
    countTokens: (text) => tokenizer.encode(text, { add_special_tokens: false }).length,
    async newChat(reducer, { systemPrompt } = {}) {
      const chat = new TransformersVisionChat({ lean: await leanFor(reducer), systemPrompt });
      return {
        reducer,
        prompt: (text, options = {}) => chat.prompt(text, options),
        get lastTurn() {
          return chat.lastTurn;
        },
        get turns() {
          return chat.turns;
        },
        dispose: () => chat.dispose()
      };
    },
    async dispose() {
      for (const lean of leanByReducer.values()) await lean.dispose();
      await model.dispose?.();
    }
  };
}
