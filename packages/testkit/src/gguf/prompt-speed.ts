// Prompt-evaluation (prefill) speed of a language model in node-llama-cpp, for the profile notes and
// for choosing shapes: how long a LLaVA prompt of N tokens takes to evaluate on this machine.
import { median } from "@leanvision/core/stats";
import { getLlama, type Llama } from "node-llama-cpp";

export interface PromptSpeed {
  tokens: number;
  /** Median over the runs. */
  ms: number;
  tokensPerSecond: number;
  runs: number[];
}

// Plain text that tokenizes to a few hundred tokens with any tokenizer; repeated as needed.
const FILLER =
  "The picture shows a small harbour at dawn. Fishing boats rest against a wooden pier, their hulls painted red, " +
  "blue and white. Gulls circle above the water while two people carry crates of ice along the quay. ";

/**
 * Evaluates prompts of each length in `lengths` (fresh context state each run) and returns the
 * median time per length. Threads and batch size default to node-llama-cpp's (which uses two
 * threads per core: set `threads` explicitly on a small or busy machine).
 */
export async function measurePromptEval(
  modelPath: string,
  lengths: number[],
  opts: { runs?: number; threads?: number; batchSize?: number; llama?: Llama } = {},
): Promise<PromptSpeed[]> {
  const llama = opts.llama ?? (await getLlama({ gpu: false, build: "never" }));
  const model = await llama.loadModel({ modelPath });
  try {
    const longest = Math.max(...lengths);
    let text = FILLER;
    while (model.tokenize(text).length < longest) text += FILLER;
    const allTokens = model.tokenize(text);
    const context = await model.createContext({ contextSize: Math.max(1024, longest + 64), threads: opts.threads, batchSize: opts.batchSize });
    try {
      const sequence = context.getSequence();
      const results: PromptSpeed[] = [];
      // One untimed warm-up so the first timed run does not pay for page faults and allocation.
      await sequence.evaluateWithoutGeneratingNewTokens(allTokens.slice(0, Math.min(32, longest)));
      for (const n of lengths) {
        const runs: number[] = [];
        for (let r = 0; r < (opts.runs ?? 3); r++) {
          await sequence.clearHistory();
          const started = performance.now();
          await sequence.evaluateWithoutGeneratingNewTokens(allTokens.slice(0, n));
          runs.push(performance.now() - started);
        }
        const ms = median(runs);
        results.push({ tokens: n, ms, tokensPerSecond: (n / ms) * 1000, runs });
      }
      return results;
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
    if (!opts.llama) await llama.dispose();
  }
}
