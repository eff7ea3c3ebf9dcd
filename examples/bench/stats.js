// Medians over repeated runs, as the benchmark JSON reports them.
import { median } from "@leanvision/core/stats";

export const TURN_FIELDS = [
  "evaluatedTokens",
  "reusedTokens",
  "encodeMs",
  "reduceMs",
  "projectMs",
  "prefillMs",
  "ttftMs"
];

/**
 * runs: one entry per run, each the list of that run's turns (TurnTimings-like objects, turn 1 first).
 * Returns one entry per turn with the median of every field over the runs.
 */
export function medianTurns(runs) {
  if (runs.length === 0) throw new RangeError("no runs to summarise");
  const turnCount = runs[0].length;
  if (runs.some((run) => run.length !== turnCount)) throw new RangeError("runs have different turn counts");
  const turns = [];
  for (let t = 0; t < turnCount; t++) {
    const entry = { turn: t + 1 };
    for (const field of TURN_FIELDS) entry[field] = round(median(runs.map((run) => run[t][field])));
    turns.push(entry);
  }
  return turns;
}

/** Two decimals for milliseconds; token counts stay whole (a median of two may be .5). */
export function round(x) {
  return Math.round(x * 100) / 100;
}
