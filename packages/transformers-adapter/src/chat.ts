// Multi-turn chat over a LeanVision-wrapped LLaVA. It keeps the token history and transformers.js's
// past_key_values between turns, so a later turn runs only its own new tokens through the decoder
// and the (reduced) image from an earlier turn is reused from the cache, never re-encoded. Turns are
// rendered with the model's own chat template (the processor's, else the tokenizer's).
import {
  DEFAULT_MAX_TOKENS,
  formatReducerSpec,
  LeanVisionError,
  toReducerSpec,
  turnImage,
  type ReducerInput,
  type ReducerSpec,
  type VisionChat,
  type VisionPromptOptions,
  type VisionTurn
} from "@leanvision/core";
import { BaseStreamer, DynamicCache, InterruptableStoppingCriteria, RawImage, random, Tensor } from "@huggingface/transformers";
import { readFileSync } from "node:fs";
import path from "node:path";
import { loadImage } from "./image.js";
import type { LeanVisionLlava } from "./lean.js";

export type PromptOptions = VisionPromptOptions;
export type TurnRecord = VisionTurn;

export type ChatHistoryItem =
  | { type: "system"; text: string }
  | { type: "user"; text: string; images: number }
  | { type: "model"; response: string[] };

type Cache = Record<string, Tensor>;
type Message = { role: string; content: string | Array<{ type: "image" } | { type: "text"; text: string }> };

export interface TransformersVisionChatOptions {
  lean: LeanVisionLlava;
  /** Default reducer of this chat's images (default: the wrapper's); a prompt may pass its own. */
  reducer?: ReducerInput;
  systemPrompt?: string;
  /** Images over this many pixels are refused with IMAGE_TOO_LARGE before they are decoded (default 50 megapixels). */
  maxPixels?: number;
}

/** The chat template a model folder ships on its own (llava-hf repos: chat_template.json), or null. */
function templateFile(dir: string): string | null {
  try {
    const json = JSON.parse(readFileSync(path.join(dir, "chat_template.json"), "utf8")) as { chat_template?: unknown };
    if (typeof json.chat_template === "string" && json.chat_template) return json.chat_template;
  } catch {
    // none, or not readable: try the next form
  }
  try {
    return readFileSync(path.join(dir, "chat_template.jinja"), "utf8") || null;
  } catch {
    return null;
  }
}

/** ABORTED once the prompt's signal fired (the same error as the llama runtime's). */
function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new LeanVisionError("ABORTED", "the prompt was aborted by its signal; the chat is as it was before it", { cause: signal.reason });
}

export class TransformersVisionChat implements VisionChat {
  readonly lean: LeanVisionLlava;
  readonly reducer: ReducerSpec;
  readonly systemPrompt: string | undefined;
  readonly maxPixels: number | undefined;
  readonly turns: TurnRecord[] = [];
  private ids: bigint[] = [];
  private past: Cache | null = null;
  private history: ChatHistoryItem[] = [];
  private isDisposed = false;
  private fileTemplate: string | null | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor({ lean, reducer, systemPrompt, maxPixels }: TransformersVisionChatOptions) {
    if (!lean || typeof lean.encodeImage !== "function") {
      throw new LeanVisionError("INVALID_INPUT", "TransformersVisionChat needs { lean } from withLeanVision(...)");
    }
    this.lean = lean;
    this.reducer = reducer === undefined ? lean.reducer : toReducerSpec(reducer);
    this.systemPrompt = systemPrompt;
    this.maxPixels = maxPixels;
    if (systemPrompt) this.history.push({ type: "system", text: systemPrompt });
  }

  /** The conversation's token ids so far (prompt and replies), as the decoder saw them. */
  get tokenIds(): bigint[] {
    return [...this.ids];
  }

  get lastTurn(): TurnRecord | undefined {
    return this.turns[this.turns.length - 1];
  }

  get disposed(): boolean {
    return this.isDisposed;
  }

  getChatHistory(): ChatHistoryItem[] {
    return structuredClone(this.history);
  }

  /**
   * Runs one user turn and returns the reply; prompts queue. On any error the conversation
   * (tokens, cache, history, turns) is left exactly as it was before the call.
   */
  prompt(text: string, options: PromptOptions = {}): Promise<string> {
    const run = this.queue.then(() => this.runPrompt(text, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async runPrompt(text: string, options: PromptOptions): Promise<string> {
    if (this.isDisposed) throw new LeanVisionError("DISPOSED", "this chat was disposed; start a new TransformersVisionChat");
    this.lean.assertLive();
    if (typeof text !== "string") throw new LeanVisionError("INVALID_INPUT", "prompt(text) needs a string");
    const { images = [], maxTokens = DEFAULT_MAX_TOKENS, temperature = 0, seed, onTextChunk, signal } = options;
    if (!Array.isArray(images)) throw new LeanVisionError("INVALID_INPUT", "options.images must be an array of images");
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new LeanVisionError("INVALID_INPUT", `maxTokens must be a positive integer, got ${maxTokens}`);
    const spec = options.reducer === undefined ? this.reducer : toReducerSpec(options.reducer);
    throwIfAborted(signal);
    const { result, record } = await this.lean.recorded(spec, () => this.runTurn(text, images, { maxTokens, temperature, seed, onTextChunk, signal }));
    const { reply, sequence, past, started, firstTokenAt, stopReason, imageCount, sizes } = result;
    if (record.images.length !== imageCount) {
      throw new LeanVisionError("UNSUPPORTED_MODEL", `${imageCount} image(s) sent but the model encoded ${record.images.length}; it did not call encode_image`);
    }
    const prefill = record.decoderCalls[0];
    // Committed only now: a failed turn leaves tokens, cache, history and turns as they were.
    this.ids = sequence;
    this.past = past;
    this.history.push({ type: "user", text, images: imageCount }, { type: "model", response: [reply] });
    this.turns.push({
      turn: this.turns.length + 1,
      reducer: formatReducerSpec(spec),
      ...record.timings,
      prefillMs: prefill?.ms ?? 0,
      ttftMs: (firstTokenAt || performance.now()) - started,
      visualTokens: record.images.reduce((n, im) => n + im.reduced.numTokens, 0),
      evaluatedTokens: prefill?.tokens ?? 0,
      reusedTokens: prefill?.past ?? 0,
      // The original image sizes (the records hold the processor's resized ones).
      images: record.images.map((im, i) => turnImage({ ...im, ...sizes[i] })),
      imageCache: { hits: 0, misses: imageCount },
      stopReason
    });
    return reply;
  }

  /**
   * The chat template of the model: the processor's, else the tokenizer's (tokenizer_config.json), else the
   * repo's chat_template.json / chat_template.jinja, which transformers.js 4.3 does not read for these models.
   */
  private template(): string {
    const { processor, tokenizer } = this.lean;
    const template = (processor as { chat_template?: unknown }).chat_template ?? tokenizer.chat_template ?? (this.fileTemplate ??= templateFile(this.lean.modelDir));
    if (typeof template !== "string" || !template) {
      throw new LeanVisionError("UNSUPPORTED_MODEL", "the model has no chat template (chat_template in tokenizer_config.json, chat_template.json or chat_template.jinja in its folder); add the one it was trained with");
    }
    return template;
  }

  /** Renders messages with the model's template; image slots as the template expects them (content parts or `<image>` text). */
  private render(messages: Array<{ role: string; text: string; images?: number }>, addGenerationPrompt: boolean): string {
    const { tokenizer, imageToken } = this.lean;
    const template = this.template();
    const parts = /\['type'\]|\.type\b|'type'/.test(template); // HF multimodal templates iterate content parts
    const rendered: Message[] = messages.map(({ role, text, images = 0 }) => ({
      role,
      content: parts
        ? [...Array.from({ length: images }, () => ({ type: "image" as const })), { type: "text" as const, text }]
        : `${`${imageToken}\n`.repeat(images)}${text}`
    }));
    return tokenizer.apply_chat_template(rendered, { tokenize: false, add_generation_prompt: addGenerationPrompt, chat_template: template }) as string;
  }

  private async runTurn(
    text: string,
    imageInputs: unknown[],
    o: { maxTokens: number; temperature: number; seed?: number; onTextChunk?: (t: string) => void; signal?: AbortSignal }
  ) {
    const started = performance.now();
    const { processor, model, tokenizer } = this.lean;
    const images: RawImage[] = [];
    for (const input of imageInputs) {
      throwIfAborted(o.signal);
      images.push(await loadImage(input as never, { maxPixels: this.maxPixels }));
    }
    const first = this.ids.length === 0;

    // This turn's text: what the template adds for the new user message (and the generation
    // prompt) after the conversation so far.
    const past = this.history.map((item) =>
      item.type === "system" ? { role: "system", text: item.text } : item.type === "user" ? { role: "user", text: item.text, images: item.images } : { role: "assistant", text: item.response.join("") }
    );
    const before = first ? "" : this.render(past, false);
    const after = this.render([...past, { role: "user", text, images: images.length }], true);
    if (!after.startsWith(before)) {
      throw new LeanVisionError("UNSUPPORTED_MODEL", "the chat template renders earlier turns differently once a new message follows; multi-turn reuse needs a prefix-stable template");
    }
    // What closes the previous reply in the template (e.g. "</s>", "<|im_end|>\n"), minus the end
    // token generation already produced (or plus it, when generation stopped at maxTokens).
    const eos = BigInt(tokenizer.eos_token_id ?? 2);
    const eosText: string = tokenizer.eos_token ?? "</s>";
    const closePrevious: bigint[] = [];
    let closing = "";
    if (!first) {
      const opened = this.render(past.slice(0, -1), true);
      const reply = past.at(-1)!.text;
      closing = before.startsWith(opened + reply) ? before.slice(opened.length + reply.length) : eosText;
      if (closing.startsWith(eosText)) {
        if (this.ids[this.ids.length - 1] !== eos) closePrevious.push(eos);
        closing = closing.slice(eosText.length);
      }
    }
    const segmentText = closing + after.slice(before.length);
    const inputs = images.length
      ? ((await processor._call(images, segmentText, { add_special_tokens: first })) as Record<string, Tensor>)
      : tokenizer(segmentText, { add_special_tokens: first });
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
    throwIfAborted(o.signal);

    const sequence = result.sequences.tolist()[0] as bigint[];
    const reply = tokenizer.decode(sequence.slice(ids.length), { skip_special_tokens: true }).trim();
    const newTokens = sequence.length - ids.length;
    const stopReason: VisionTurn["stopReason"] = sequence[sequence.length - 1] === eos || newTokens < o.maxTokens ? "endOfTurn" : "maxTokens";
    return { reply, sequence, past: result.past_key_values, ids, started, firstTokenAt, stopReason, imageCount: images.length, sizes: images.map(({ width, height }) => ({ width, height })) };
  }

  /** Drops the cache and history. Later prompts throw DISPOSED. The wrapped model stays usable. */
  async dispose(): Promise<void> {
    this.isDisposed = true;
    this.past = null;
    this.ids = [];
  }
}
