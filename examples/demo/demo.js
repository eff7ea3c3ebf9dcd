// The multi-turn image chat behind `pnpm demo`: the same conversation with and without LeanVision,
// timings side by side per turn.
import { createInterface } from "node:readline/promises";
import { resolve } from "node:path";
import { formatReducerSpec, parseReducerSpec } from "@leanvision/core";
import { BENCH_REDUCERS, DEFAULT_REDUCER } from "@leanvision/core/presets";
import { MODEL_OPTIONS, parseCli, parseRuntime, parseModelSource, positiveInt } from "../lib/args.js";
import { openRuntime, warmUp } from "../lib/runtime.js";
import { progressBar } from "../lib/progress.js";

const OTHER_REDUCERS = BENCH_REDUCERS.filter((r) => r !== "none" && r !== DEFAULT_REDUCER).join(", ");

export const DEMO_USAGE = `Usage: pnpm demo -- [options]

  --runtime llama|transformers   default llama
  --model <gguf> --mmproj <gguf> your own LLaVA files (llama); --model <dir> for a transformers.js folder
  --projector <file>             with --model: a LeanVision projector file (llama: .gguf with --mmproj; transformers: TokenPacker .onnx; --reducer tokenpacker)
  --profile <name>               a synthetic model instead (default: small for llama, tiny for transformers)
  --image <file>                 the image to talk about (default: llama.cpp's tools/mtmd/test-1.jpeg)
  --reducer <spec>               LeanVision's reducer (default ${DEFAULT_REDUCER}; others: ${OTHER_REDUCERS})
  --turns <n>                    scripted turns when no terminal is attached (default 3)
  --max-tokens <n>               answer length per turn (default 16)
  --threads <n>                  CPU threads (llama; default: all cores but one)
  --help`;

const OPTIONS = {
  ...MODEL_OPTIONS,
  reducer: { type: "string", default: DEFAULT_REDUCER },
  turns: { type: "string", default: "3" },
  "max-tokens": { type: "string", default: "16" }
};

export const SCRIPTED_QUESTIONS = [
  "What is in this picture?",
  "Which colours stand out?",
  "Summarise the picture in five words."
];

export function parseDemoArgs(argv) {
  const { values } = parseCli(argv, OPTIONS, DEMO_USAGE);
  if (values.help) return { help: true };
  const runtime = parseRuntime(values.runtime);
  const reducer = parseReducerSpec(values.reducer);
  return {
    help: false,
    runtime,
    ...parseModelSource(values, runtime, { llama: "small", transformers: "tiny" }),
    image: values.image ?? null,
    reducer,
    turns: positiveInt(values.turns, "--turns"),
    maxTokens: positiveInt(values["max-tokens"], "--max-tokens"),
    threads: values.threads === undefined ? undefined : positiveInt(values.threads, "--threads")
  };
}

/**
 * Runs the demo. io: { input, output, errorOutput, interactive } — streams for the conversation;
 * interactive = read questions from input (a terminal) instead of the scripted ones.
 * Returns the per-turn comparisons it printed.
 */
export async function runDemo(argv, io) {
  const { output, errorOutput } = io;
  const say = (text = "") => output.write(text + "\n");
  const options = parseDemoArgs(argv);
  if (options.help) {
    say(DEMO_USAGE);
    return [];
  }
  const { sampleImagePath } = await import("@leanvision/testkit");
  const image = resolve(options.image ?? sampleImagePath());
  const leanName = formatReducerSpec(options.reducer);

  say("LeanVision demo: one image, several turns, the same chat with and without LeanVision.");
  if (options.profile) {
    say(`Model: the synthetic "${options.profile}" profile (real LLaVA architecture, random weights).`);
    say("  Its timings are real; its answers are noise. For real answers, bring real files:");
    say("  pnpm demo -- --model llava-v1.5-7b.Q4_K_M.gguf --mmproj mmproj-model-f16.gguf --image photo.jpg");
    say(`  (also: --runtime transformers --model <onnx folder>, --reducer ${OTHER_REDUCERS.replaceAll(", ", " | ")})`);
  } else {
    say(`Model: ${options.modelPath}${options.mmprojPath ? ` + ${options.mmprojPath}` : ""} (${options.runtime})`);
  }
  say(`Image: ${image}`);
  say(`LeanVision reducer: ${leanName}`);
  say();

  const rt = await openRuntime({
    ...options,
    imageCacheBytes: 0, // every turn-1 encode is measured, not served from the warm-up's cache
    onProgress: progressBar(`writing the "${options.profile}" model (first run only)`, errorOutput)
  });
  await warmUp(rt, image, [{ kind: "none" }, options.reducer]);
  const baseline = await rt.createChat({ reducer: "none" });
  const lean = await rt.createChat({ reducer: options.reducer });
  const rows = [];
  try {
    const questions = io.interactive ? askLoop(io) : scripted(options.turns, say);
    let turn = 0;
    for await (const question of questions) {
      turn++;
      const images = turn === 1 ? [image] : [];
      output.write(`LeanVision> `);
      await lean.prompt(question, { images, maxTokens: options.maxTokens, temperature: 0, onTextChunk: (t) => output.write(t) });
      say();
      await baseline.prompt(question, { images, maxTokens: options.maxTokens, temperature: 0 });
      const row = { turn, question, without: baseline.lastTurn, with: lean.lastTurn };
      rows.push(row);
      say(formatComparison([row], leanName));
      say();
    }
  } finally {
    await baseline.dispose();
    await lean.dispose();
    await rt.dispose();
  }
  if (rows.length > 0) {
    say("Summary, every turn. vision = encode + reduce + project; prefill = the language model on the new tokens;");
    say("TTFT = from the question to the first answer token; reused = tokens served from the KV cache.");
    say(formatComparison(rows, leanName));
  }
  return rows;
}

async function* scripted(turns, say) {
  for (let i = 0; i < turns; i++) {
    const question = SCRIPTED_QUESTIONS[i % SCRIPTED_QUESTIONS.length];
    say(`you> ${question}`);
    yield question;
  }
}

async function* askLoop({ input, output }) {
  const rl = createInterface({ input, output });
  output.write("Ask about the image; an empty line or /quit ends the chat.\n");
  try {
    while (true) {
      const question = (await rl.question("you> ")).trim();
      if (question === "" || question === "/quit" || question === "/exit") return;
      yield question;
    }
  } finally {
    rl.close();
  }
}

/** Side-by-side table: one "without" and one "with" line per turn, plus the speed-ups. */
export function formatComparison(rows, leanName) {
  const header = ["turn", "", "visual tokens", "evaluated", "reused", "vision ms", "prefill ms", "TTFT ms", "prefill speed-up", "TTFT speed-up"];
  const cells = (t) => [String(t.visualTokens), String(t.evaluatedTokens), String(t.reusedTokens), ms(t.encodeMs + t.reduceMs + t.projectMs), ms(t.prefillMs), ms(t.ttftMs)];
  const lines = [];
  for (const { turn, without, with: withLean } of rows) {
    lines.push([String(turn), "without LeanVision", ...cells(without), "", ""]);
    lines.push(["", `with ${leanName}`, ...cells(withLean), ratio(without.prefillMs, withLean.prefillMs), ratio(without.ttftMs, withLean.ttftMs)]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const format = (cells) => cells.map((c, i) => (i === 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd();
  return [format(header), ...lines.map(format)].join("\n");
}

function ms(value) {
  return value.toFixed(1);
}

function ratio(slow, fast) {
  return fast > 0 ? `${(slow / fast).toFixed(2)}x` : "";
}
