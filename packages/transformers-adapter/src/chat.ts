// Multi-turn chat over a LeanVision-wrapped LLaVA. It keeps the token history and transformers.js's
// past_key_values between turns, so a later turn runs only its own new tokens through the decoder
// and the (reduced) image from an earlier turn is reused from the cache, never re-encoded.
import { formatReducerSpec, LeanVisionError, type TurnImage, type TurnTimings, type VisionPromptOptions } from "@leanvision/core";
import { BaseStreamer, DynamicCache, InterruptableStoppingCriteria, random, Tensor } from "@huggingface/transformers";
import { loadImage, type ImageInput } from "./image.js";
import type { LeanVisionLlava } from "./lean.js";

/** temperature 0 (the default) is greedy. */
export type PromptOptions = VisionPromptOptions<ImageInput>;

export type TurnRecord = TurnTimings & { turn: number; reducer: string; images: TurnImage[] };

export type ChatHistoryItem =
  | { type: "system"; text: string }
  | { type: "user"; text: string; images: number }
  | { type: "model"; response: string[] };

type Cache = Record<string, Tensor>;

export class TransformersVisionChat {
  readonly lean: LeanVisionLlava;
  readonly systemPrompt: string | undefined;
  readonly turns: TurnRecord[] = [];
  private ids: bigint[] = [];
  private past: Cache | null = null;
  private history: ChatHistoryItem[] = [];
  private disposed = false;
  private busy = false;

  constructor({ lean, systemPrompt }: { lean: LeanVisionLlava; systemPrompt?: string }) {
    if (!lean || typeof lean.encodeImage !== "function") {
      throw new LeanVisionError("INVALID_INPUT", "TransformersVisionChat needs { lean } from withLeanVision(...)");
    }
    this.lean = lean;
    this.systemPrompt = systemPrompt;
    if (systemPrompt) this.history.push({ type: "system", text: systemPrompt });
  }

  /** The conversation's token ids so far (prompt and replies), as the decoder saw them. */
  get tokenIds(): bigint[] {
    return [...this.ids];
  }

  get lastTurn(): TurnRecord | undefined {
    return this.turns[this.turns.length - 1];
  }

  getChatHistory(): ChatHistoryItem[] {
    return structuredClone(this.history);
  }

  /**
   * Runs one user turn and returns the reply. On any error the conversation (tokens, cache,
   * history, turns) is left exactly as it was before the call.
   */
  async prompt(text: string, options: PromptOptions = {}): Promise<string> {
    if (this.disposed) throw new LeanVisionError("DISPOSED", "this chat was disposed; start a new TransformersVisionChat");
    this.lean.activate(); // also throws DISPOSED for a disposed wrapper
    if (typeof text !== "string") throw new LeanVisionError("INVALID_INPUT", "prompt(text) needs a string");
    if (this.busy) throw new LeanVisionError("INVALID_INPUT", "a prompt is already running on this chat; await it first");
    const { images = [], maxTokens = 256, temperature = 0, seed, onTextChunk, signal } = options;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new LeanVisionError("INVALID_INPUT", `maxTokens must be a positive integer, got ${maxTokens}`);
    signal?.throwIfAborted();
    this.busy = true;
    try {
      return await this.runTurn(text, images, { maxTokens, temperature, seed, onTextChunk, signal });
    } finally {
      this.busy = false;
    }
  }

  private async runTurn(
    text: string,
    imageInputs: ImageInput[],
    o: { maxTokens: number; temperature: number; seed?: number; onTextChunk?: (t: string) => void; signal?: AbortSignal }
  ): Promise<string> {
    const started = performance.now();
    const { processor, model } = this.lean;
    const tokenizer = processor.tokenizer;
    const images = await Promise.all(imageInputs.map(loadImage));
    const imageToken = processor.config.image_token ?? "<image>";
    const first = this.ids.length === 0;

    // LLaVA-1.5 (vicuna_v1) turns: "[system ]USER: <image>\n... ASSISTANT: reply</s>".
    const segment = `${first && this.systemPrompt ? `${this.systemPrompt} ` : ""}USER: ${`${imageToken}\n`.repeat(images.length)}${text} ASSISTANT:`;
    const eos = BigInt(tokenizer.eos_token_id ?? 2);
    const closePrevious = !first && this.ids[this.ids.length - 1] !== eos ? [eos] : [];
    const inputs = images.length
      ? ((await processor._call(images, segment, { add_special_tokens: first })) as Record<string, Tensor>)
      : tokenizer(segment, { add_special_tokens: first });
    const segmentIds = (inputs.input_ids as Tensor).tolist()[0] as bigint[];
    const ids = [...this.ids, ...closePrevious, ...segmentIds];

    const interrupt = new InterruptableStoppingCriteria();
    const onAbort = () => interrupt.interrupt();
    o.signal?.addEventListener("abort", onAbort);
    let firstTokenAt = 0;
    let emitted = "";
    const generated: bigint[] = [];
    let promptSeen = false;
    const streamer = new (class extends BaseStreamer {
      override put(value: bigint[][]) {
        if (!promptSeen) return void (promptSeen = true); // generate first streams the prompt itself
        if (!firstTokenAt) firstTokenAt = performance.now();
        generated.push(value[0][0]);
        if (o.onTextChunk) {
          const textSoFar = tokenizer.decode(generated, { skip_special_tokens: true });
          if (textSoFar.length > emitted.length && textSoFar.startsWith(emitted)) o.onTextChunk(textSoFar.slice(emitted.length));
          emitted = textSoFar;
        }
      }
      override end() {}
    })();

    if (o.temperature > 0 && o.seed !== undefined) random.seed(o.seed);
    this.lean.clearDecoderCalls();
    let result: { sequences: Tensor; past_key_values: Cache };
    try {
      result = (await model.generate({
        input_ids: new Tensor("int64", BigInt64Array.from(ids), [1, ids.length]),
        attention_mask: new Tensor("int64", new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
        ...(images.length ? { pixel_values: inputs.pixel_values } : {}),
        // A copy: generate updates the cache it is given in place, and a failed turn must leave ours intact.
        ...(this.past ? { past_key_values: new DynamicCache({ ...this.past }) } : {}),
        max_new_tokens: o.maxTokens,
        do_sample: o.temperature > 0,
        ...(o.temperature > 0 ? { temperature: o.temperature } : {}),
        streamer,
        stopping_criteria: [interrupt],
        return_dict_in_generate: true
      })) as { sequences: Tensor; past_key_values: Cache };
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
    }
    o.signal?.throwIfAborted();

    const sequence = result.sequences.tolist()[0] as bigint[];
    const reply = tokenizer.decode(sequence.slice(ids.length), { skip_special_tokens: true }).trim();
    const prefill = this.lean.decoderCalls[0];
    const encoded = images.length ? this.lean.lastImages : [];
    if (encoded.length !== images.length) {
      throw new LeanVisionError("UNSUPPORTED_MODEL", `${images.length} image(s) sent but the model encoded ${encoded.length}; it did not call encode_image`);
    }
    const timings = images.length ? this.lean.lastTimings : { encodeMs: 0, reduceMs: 0, projectMs: 0 };

    this.ids = sequence;
    this.past = result.past_key_values;
    this.history.push({ type: "user", text, images: images.length }, { type: "model", response: [reply] });
    this.turns.push({
      turn: this.turns.length + 1,
      reducer: formatReducerSpec(this.lean.reducer),
      ...timings,
      prefillMs: prefill?.ms ?? 0,
      ttftMs: (firstTokenAt || performance.now()) - started,
      visualTokens: encoded.reduce((n, im) => n + im.reduced.numTokens, 0),
      evaluatedTokens: prefill?.tokens ?? 0,
      reusedTokens: prefill?.past ?? 0,
      images: encoded.map((im, i) => ({
        width: images[i].width,
        height: images[i].height,
        grid: im.features.grid,
        clsIndex: im.features.clsIndex,
        provenance: im.reduced.provenance
      }))
    });
    return reply;
  }

  /** Drops the cache and history. Later prompts throw DISPOSED. The wrapped model stays usable. */
  dispose(): void {
    this.disposed = true;
    this.past = null;
    this.ids = [];
  }
}
