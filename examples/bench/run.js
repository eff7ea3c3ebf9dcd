// Runs the benchmark: every reducer, `runs` fresh conversations of `turns` turns each, medians per turn.
import { formatReducerSpec } from "@leanvision/core";
import { medianTurns } from "./stats.js";
import { warmUp } from "../lib/runtime.js";

/** Questions asked in order; the image goes with the first. */
export const QUESTIONS = [
  "Describe this image in one sentence.",
  "What colours stand out?",
  "Is there any text in it?",
  "What would you crop to focus on the subject?"
];

export function questionFor(turnIndex) {
  return QUESTIONS[turnIndex % QUESTIONS.length];
}

/**
 * rt: an open runtime (lib/runtime.js). Returns the benchmark JSON:
 * { runtime, profile, model, textTokens, results: [{ reducer, visualTokens, turns: [...] }] }.
 */
/** What the report says about the model: the runtime's description minus run settings. */
function modelDescription({ profile, threads, pipeline, ...model }) {
  return model;
}

export async function runBenchmark(rt, { reducers, image, turns, runs, maxTokens, onRun = () => {} }) {
  await warmUp(rt, image, reducers);
  const results = [];
  for (const reducer of reducers) {
    const name = formatReducerSpec(reducer);
    const perRun = [];
    let visualTokens = 0;
    for (let run = 0; run < runs; run++) {
      onRun({ reducer: name, run: run + 1, runs });
      // No system prompt: the same prompt stock llama-mtmd-cli gets (the anchor row), so TTFTs compare.
      const chat = await rt.createChat({ reducer, systemPrompt: "" });
      try {
        const runTurns = [];
        for (let t = 0; t < turns; t++) {
          await chat.prompt(questionFor(t), { images: t === 0 ? [image] : [], maxTokens, temperature: 0, seed: 1 });
          runTurns.push(chat.lastTurn);
        }
        visualTokens = runTurns[0].visualTokens;
        perRun.push(runTurns);
      } finally {
        await chat.dispose();
      }
    }
    results.push({ reducer: name, visualTokens, turns: medianTurns(perRun) });
  }
  return {
    runtime: rt.runtime,
    profile: rt.description.profile,
    model: modelDescription(rt.description),
    textTokens: rt.countTextTokens(questionFor(0)),
    ...(rt.description.pipeline && { pipeline: true }),
    results
  };
}
