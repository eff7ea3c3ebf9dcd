// Opens a runtime for the examples: a synthetic testkit profile or real files, in either adapter.
// Everything the examples do afterwards goes through core's runtime contract (VisionRuntime):
//   const rt = await openRuntime({ runtime, profile | modelPath (+ mmprojPath) });
//   const chat = await rt.createChat({ reducer });   // a fresh context / KV cache
//   await chat.prompt(text, { images, maxTokens, onTextChunk });  chat.lastTurn; await chat.dispose();
import { LeanVisionError } from "@leanvision/core";
import { defaultThreads } from "@leanvision/llama-adapter";

export { defaultThreads };

/**
 * source: { runtime: "llama"|"transformers", profile?: string, modelPath?: string, mmprojPath?: string, projectorPath?: string,
 *           dtype?: string, threads?: number, imageCacheBytes?: number, pipeline?: boolean, onProgress?: (done, total) => void }
 * profile = a synthetic model written by the testkit; threads = CPU threads (llama: its threads; transformers: each
 * onnxruntime session's intra-op threads; default: all cores but one);
 * imageCacheBytes = 0 turns the llama runtime's image cache off (the bench and the demo measure every encode);
 * dtype = the transformers.js dtype of the ONNX files (transformers; default fp32); pipeline = pipelined prefill (llama).
 * projectorPath = a projector file replacing the mmproj's projector (llama: GGUF, e.g. TokenPacker's; transformers: TokenPacker's ONNX).
 * Returns the adapter's VisionRuntime; `description` also names the profile.
 */
export async function openRuntime({ runtime, profile, modelPath, mmprojPath, projectorPath, dtype, threads = defaultThreads(), imageCacheBytes, pipeline, onProgress }) {
  if (runtime !== "llama" && runtime !== "transformers") {
    throw new LeanVisionError("INVALID_INPUT", `unknown runtime "${runtime}"; use "llama" or "transformers"`);
  }
  if (profile) {
    const testkit = await import("@leanvision/testkit");
    if (runtime === "llama") ({ modelPath, mmprojPath, projectorPath } = await testkit.ensureLlavaGguf(profile, { onProgress }));
    else ({ dir: modelPath, projectorPath } = await testkit.ensureLlavaOnnx(profile, { onProgress }));
  }
  const adapter = await import(runtime === "llama" ? "@leanvision/llama-adapter" : "@leanvision/transformers-adapter");
  const rt = await adapter.openVisionRuntime({ modelPath, mmprojPath, ...(projectorPath && { projectorPath }), threads, imageCacheBytes, ...(dtype && { dtype }), ...(pipeline && { pipeline }) });
  rt.description.profile = profile ?? null;
  return rt;
}

/**
 * Untimed work before measuring, so that one-off costs (weights paged in, compute graphs allocated,
 * threads spun up, the reducers' code compiled) land in no measured turn and in neither side of a
 * comparison: every reducer's encode (each capture path), then one chat turn with the reducer that
 * keeps the fewest tokens (the language model's path; a turn with all of a NeXT image's 2,880 tokens
 * would cost minutes on a 7B model for nothing).
 */
export async function warmUp(rt, image, reducers) {
  let cheapest = reducers[0];
  let fewest = Infinity;
  for (const reducer of reducers) {
    const { numTokens } = await rt.encodeImage(image, reducer);
    if (numTokens < fewest) [cheapest, fewest] = [reducer, numTokens];
  }
  const chat = await rt.createChat({ reducer: cheapest });
  try {
    await chat.prompt("Hi", { images: [image], maxTokens: 1, temperature: 0 });
  } finally {
    await chat.dispose();
  }
}
