#!/usr/bin/env node
// Prefill benchmark for the transformers.js adapter on the testkit's synthetic LLaVA folders.
// Same JSON as the shared bench CLI: { runtime, profile, model, textTokens, results: [{ reducer,
// visualTokens, turns: [{ turn, evaluatedTokens, reusedTokens, encodeMs, reduceMs, projectMs,
// prefillMs, ttftMs }] }] } with medians over runs (one warm-up run per reducer is not counted).
//
//   pnpm build && node packages/transformers-adapter/bench/prefill.mjs --profile tiny --runs 10
//   node packages/transformers-adapter/bench/prefill.mjs --profile llava-1.5-7b-shaped --runs 3 --json out.json
import { AutoProcessor, env, LlavaForConditionalGeneration } from "@huggingface/transformers";
import { formatReducerSpec, parseReducerSpec } from "@leanvision/core";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { TransformersVisionChat, withLeanVision } from "../dist/index.js";
import { ensureLlavaOnnx, llamaSpmVocabPath, ONNX_PROFILES } from "../../testkit/dist/onnx/index.js";

const QUESTIONS = ["Describe this image in one sentence.", "What colours stand out?", "Is there any text in it?"];
const FIELDS = ["evaluatedTokens", "reusedTokens", "encodeMs", "reduceMs", "projectMs", "prefillMs", "ttftMs"];

const { values: args } = parseArgs({
  options: {
    profile: { type: "string", default: "tiny" },
    reducers: { type: "string", default: "none;visionzip:dominant=54,contextual=10" },
    runs: { type: "string", default: "5" },
    turns: { type: "string", default: "2" },
    "max-tokens": { type: "string", default: "4" },
    image: { type: "string" },
    json: { type: "string" }
  }
});
const runs = Number(args.runs);
const turns = Number(args.turns);
const maxTokens = Number(args["max-tokens"]);
const reducers = args.reducers.split(";").map(parseReducerSpec);
// The bundled llama.cpp source's sample picture (tools/mtmd/test-1.jpeg), next to its vocab files.
const image = args.image ?? path.join(path.dirname(await llamaSpmVocabPath()), "..", "tools", "mtmd", "test-1.jpeg");

env.allowRemoteModels = false;
const { dir } = await ensureLlavaOnnx(args.profile);
const model = await LlavaForConditionalGeneration.from_pretrained(dir, { local_files_only: true, dtype: "fp32" });
const processor = await AutoProcessor.from_pretrained(dir, { local_files_only: true });
const lean = await withLeanVision({ model, processor, modelPath: dir });

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const results = [];
for (const reducer of reducers) {
  lean.reducer = reducer;
  const perRun = [];
  for (let run = 0; run <= runs; run++) {
    const chat = new TransformersVisionChat({ lean });
    for (let t = 0; t < turns; t++) {
      await chat.prompt(QUESTIONS[t % QUESTIONS.length], { images: t === 0 ? [image] : [], maxTokens });
    }
    if (run > 0) perRun.push(chat.turns); // run 0 warms up the sessions
    chat.dispose();
    process.stderr.write(`  ${formatReducerSpec(reducer)}: run ${run}/${runs}${run === 0 ? " (warm-up)" : ""}\n`);
  }
  results.push({
    reducer: formatReducerSpec(reducer),
    visualTokens: perRun[0][0].visualTokens,
    turns: Array.from({ length: turns }, (_, t) => ({
      turn: t + 1,
      ...Object.fromEntries(FIELDS.map((f) => [f, Math.round(median(perRun.map((r) => r[t][f])) * 10) / 10]))
    }))
  });
}
await lean.dispose();

const bench = {
  runtime: "transformers",
  profile: args.profile,
  model: { dir, ...ONNX_PROFILES[args.profile] },
  runs,
  maxTokens,
  image,
  textTokens: processor.tokenizer.encode(QUESTIONS[0], { add_special_tokens: false }).length,
  results
};
if (args.json) writeFileSync(args.json, JSON.stringify(bench, null, 2));

console.log(`transformers.js, ${args.profile}, medians of ${runs} runs (image ${path.basename(image)}, ${maxTokens} new tokens a turn)`);
console.log("reducer".padEnd(40), "turn", "visual", "evaluated", "reused", "encode", "reduce", "project", "prefill", "ttft (ms)");
for (const r of results) {
  for (const t of r.turns) {
    console.log(
      r.reducer.padEnd(40),
      String(t.turn).padStart(4),
      String(t.turn === 1 ? r.visualTokens : 0).padStart(6),
      String(t.evaluatedTokens).padStart(9),
      String(t.reusedTokens).padStart(6),
      ...[t.encodeMs, t.reduceMs, t.projectMs, t.prefillMs, t.ttftMs].map((v) => v.toFixed(1).padStart(8))
    );
  }
}
const base = results[0].turns[0];
for (const r of results.slice(1)) {
  const t = r.turns[0];
  console.log(
    `${r.reducer} vs ${results[0].reducer}, turn 1: ideal token ratio ${(base.evaluatedTokens / t.evaluatedTokens).toFixed(2)}x ` +
      `(visual ${results[0].visualTokens}/${r.visualTokens} = ${(results[0].visualTokens / r.visualTokens).toFixed(2)}x), ` +
      `measured prefill ${(base.prefillMs / t.prefillMs).toFixed(2)}x, time to first token ${(base.ttftMs / t.ttftMs).toFixed(2)}x`
  );
}
