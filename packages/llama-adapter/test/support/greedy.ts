import type { LlamaContextSequence, Token } from "node-llama-cpp";

/** The next `count` tokens node-llama-cpp samples greedily after evaluating `tokens`. */
export async function greedy(sequence: LlamaContextSequence, tokens: Token[], count: number): Promise<Token[]> {
  const out: Token[] = [];
  for await (const token of sequence.evaluate(tokens, { temperature: 0 })) {
    out.push(token);
    if (out.length >= count) break;
  }
  return out;
}
