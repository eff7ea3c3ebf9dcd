#!/usr/bin/env node
// Prefill and time-to-first-token of VisionChatSession per reducer, against the ideal token ratio.
//
//   node packages/llama-adapter/scripts/measure-prefill.mjs --model <gguf> --mmproj <gguf>
//        [--image <file>] [--reducers none;visionzip:54+10;...] [--runs 3]
//        [--threads 1] [--max-tokens 4]
//
// Each run is a fresh context: turn 1 sends the image and a question, turn 2 a follow-up (which
// should reuse the image's KV cache). Prints medians over runs. Needs `pnpm build` first.
import path from "node:path";
import { parseArgs } from "node:util";
import { getLlama } from "node-llama-cpp";
import { formatReducerSpec, parseReducerSpec } from "@leanvision/core";
import { loadVisionModel, VisionChatSession } from "../dist/index.js";
import { ensureLlamaSource } from "./llama-source.mjs";

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    mmproj: { type: "string" },
    image: { type: "string" },
    reducers: { type: "string", default: "none;visionzip:54+10;visionzip:108+20" },
    runs: { type: "string", default: "3" },
    threads: { type: "string", default: "1" },
    "max-tokens": { type: "string", default: "4" }
  }
});
if (!args.model || !args.mmproj) {
  console.error("usage: measure-prefill.mjs --model <gguf> --mmproj <gguf> [--image f] [--reducers a;b] [--runs n] [--threads n]");
  process.exit(2);
}
const image = args.image ?? path.join(ensureLlamaSource(), "tools", "mtmd", "test-1.jpeg");
const runs = Number(args.runs);
const threads = Number(args.threads);
const maxTokens = Number(args["max-tokens"]);
const reducers = args.reducers.split(";").map((s) => parseReducerSpec(s));
const questions = ["What is in this picture? Describe it in detail.", "What colors stand out?"];

const llama = await getLlama({ gpu: false });
const model = await llama.loadModel({ modelPath: args.model });
const vision = await loadVisionModel({ llama, model, mmprojPath: args.mmproj, threads });

async function conversation(reducer) {
  vision.reducer = reducer;
  const context = await model.createContext({ contextSize: 2048, threads });
  const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, systemPrompt: "You are a helpful assistant." });
  try {
    await session.prompt(questions[0], { images: [image], maxTokens, temperature: 0 });
    await session.prompt(questions[1], { maxTokens, temperature: 0 });
    return session.turns;
  } finally {
    session.dispose();
    await context.dispose();
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

await conversation(reducers[0]); // warm-up: page in the weights
const rows = [];
for (const reducer of reducers) {
  const all = [];
  for (let run = 0; run < runs; run++) all.push(await conversation(reducer));
  for (const turn of [0, 1]) {
    const pick = (key) => median(all.map((turns) => turns[turn][key]));
    rows.push({
      reducer: formatReducerSpec(reducer),
      turn: turn + 1,
      visual: all[0][turn].visualTokens,
      evaluated: pick("evaluatedTokens"),
      reused: pick("reusedTokens"),
      encodeMs: pick("encodeMs"),
      reduceMs: pick("reduceMs"),
      projectMs: pick("projectMs"),
      prefillMs: pick("prefillMs"),
      ttftMs: pick("ttftMs")
    });
  }
}

const baseline = (turn) => rows.find((r) => r.turn === turn);
const table = rows.map((r) => {
  const base = baseline(r.turn);
  return {
    ...r,
    encodeMs: r.encodeMs.toFixed(0),
    reduceMs: r.reduceMs.toFixed(1),
    projectMs: r.projectMs.toFixed(1),
    prefillMs: r.prefillMs.toFixed(1),
    ttftMs: r.ttftMs.toFixed(1),
    // Prefill speedup against the first reducer, and the ideal one: the ratio of tokens evaluated.
    speedup: (base.prefillMs / r.prefillMs).toFixed(2),
    ideal: (base.evaluated / r.evaluated).toFixed(2)
  };
});
console.log(`model ${path.basename(args.model)}, threads ${threads}, runs ${runs}, max tokens ${maxTokens}, image ${path.basename(image)}`);
console.table(table);
vision.dispose();
await model.dispose();
