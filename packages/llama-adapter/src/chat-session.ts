// VisionChatSession: node-llama-cpp's LlamaChatSession with images. An image is encoded and reduced
// by the vision model, its embeddings are registered with the sequence's injector, and the user
// message carries a marker that renders as the image's placeholder tokens (see injection.ts). The
// image precedes the text, as in LLaVA ("<image>\n<question>").
import { DEFAULT_MAX_TOKENS, formatReducerSpec, LeanVisionError, toReducerSpec, turnImage } from "@leanvision/core";
import type { EncodedImage, ReducerInput, ReducerSpec, TurnImage, VisionChat, VisionPromptOptions, VisionTurn } from "@leanvision/core";
import { LlamaChatSession } from "node-llama-cpp";
import type { ChatHistoryItem, LlamaChatSessionOptions, LlamaContextSequence, Token } from "node-llama-cpp";
import { createInjectedImage, previewMarker, SequenceInjector } from "./injection.js";
import type { DecodeEvent, InjectedImage } from "./injection.js";
import type { LlamaVisionModel } from "./vision-model.js";

export interface VisionChatSessionOptions {
  contextSequence: LlamaContextSequence;
  vision: LlamaVisionModel;
  /** Default reducer of this session's images (default none); a prompt may pass its own. */
  reducer?: ReducerInput;
  systemPrompt?: string;
  /** Passed to LlamaChatSession; `"auto"` (its default) picks one from the model. */
  chatWrapper?: LlamaChatSessionOptions["chatWrapper"];
  /**
   * Pipelined prefill (default false): the prompt starts as soon as its images' token counts are
   * known, so the text before an image and each tile's kept embeddings prefill while later tiles
   * still encode (LlamaVisionModel.streamImage). Images whose count depends on their content
   * (adaptive budgets) are encoded first, as without it.
   */
  pipeline?: boolean;
}

export type { VisionPromptOptions };

export interface LlamaVisionTurn extends VisionTurn {
  /** Visual embeddings decoded this turn: this turn's images, plus earlier ones if they had to be re-injected. */
  injectedTokens: number;
}

/**
 * Context shift that never cuts inside a message: node-llama-cpp's default strategy truncates old
 * messages by characters, which could split an image marker (the tokenizer then refuses it). This
 * one drops whole turns, oldest first, keeping the first system message and the current turn, so an
 * image leaves the context window whole or not at all.
 */
type ContextShiftStrategy = Extract<NonNullable<NonNullable<LlamaChatSessionOptions["contextShift"]>["strategy"]>, (...args: never[]) => unknown>;
const dropOldestTurns: ContextShiftStrategy = ({ chatHistory, maxTokensCount, tokenizer, chatWrapper }) => {
  const history = chatHistory.slice();
  const first = history[0]?.type === "system" ? 1 : 0;
  const fits = () => chatWrapper.generateContextState({ chatHistory: history }).contextText.tokenize(tokenizer).length <= maxTokensCount;
  while (!fits()) {
    let currentTurn = history.length - 1;
    while (currentTurn >= 0 && history[currentTurn].type !== "user") currentTurn--;
    if (currentTurn <= first) break; // nothing older left; node-llama-cpp's own strategy takes over
    // One turn: the messages up to and including the next model response.
    let end = first;
    while (end < currentTurn - 1 && history[end].type !== "model") end++;
    history.splice(first, end - first + 1);
  }
  return { chatHistory: history, metadata: null };
};

/** ABORTED once the prompt's signal fired, before anything is written. */
function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new LeanVisionError("ABORTED", "the prompt was aborted by its signal; the chat is as it was before it", { cause: signal.reason });
}

/** Tokens kept free after the answer's room, for the chat template's end-of-turn tokens. */
const ANSWER_MARGIN = 8;

/** Collects the decode events of one prompt until its first token is sampled. */
class TurnRecorder {
  prefillStart: number | undefined;
  prefillEnd: number | undefined;
  reusedTokens: number | undefined;
  evaluatedTokens = 0;
  injectedTokens = 0;

  onDecode(event: DecodeEvent): void {
    if (this.prefillEnd != null) return; // generation, not prompt evaluation
    this.prefillStart ??= event.startedAt;
    this.reusedTokens ??= event.startIndex;
    this.evaluatedTokens += event.textTokens + event.visualTokens;
    this.injectedTokens += event.visualTokens;
    if (event.sampled) this.prefillEnd = event.endedAt;
  }
}

export class VisionChatSession implements VisionChat {
  readonly vision: LlamaVisionModel;
  readonly reducer: ReducerSpec;
  private readonly chat: LlamaChatSession;
  private readonly injector: SequenceInjector;
  private readonly history: LlamaVisionTurn[] = [];
  private recorder: TurnRecorder | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private isDisposed = false;

  private readonly pipeline: boolean;

  constructor({ contextSequence, vision, reducer = "none", systemPrompt, chatWrapper, pipeline = false }: VisionChatSessionOptions) {
    if (contextSequence == null || vision == null) {
      throw new LeanVisionError("INVALID_INPUT", "new VisionChatSession({ contextSequence, vision }) needs both a context sequence and a vision model");
    }
    if (contextSequence.model !== vision.model) {
      throw new LeanVisionError("INVALID_INPUT", "the context sequence and the vision model were loaded for different models; use the same LlamaModel");
    }
    this.vision = vision;
    this.pipeline = pipeline;
    this.reducer = toReducerSpec(reducer);
    this.injector = new SequenceInjector(contextSequence, vision.decodeEmbeddings, (event) => this.recorder?.onDecode(event));
    try {
      this.chat = new LlamaChatSession({ contextSequence, systemPrompt, chatWrapper, contextShift: { strategy: dropOldestTurns } });
    } catch (error) {
      this.injector.detach();
      throw error;
    }
  }

  get sequence(): LlamaContextSequence {
    return this.injector.sequence;
  }

  /** The last completed turn, or undefined before the first. */
  get lastTurn(): LlamaVisionTurn | undefined {
    return this.history.at(-1);
  }

  /** Every completed turn, oldest first. */
  get turns(): readonly LlamaVisionTurn[] {
    return this.history;
  }

  get disposed(): boolean {
    return this.isDisposed;
  }

  /**
   * The chat history as LlamaChatSession keeps it. A user message with images starts with one
   * marker per image (private-use characters); it stays valid for setChatHistory in this process.
   */
  getChatHistory(): ChatHistoryItem[] {
    this.ensureNotDisposed();
    return this.chat.getChatHistory();
  }

  /** Replaces the history; images it references are re-injected where the KV cache cannot be reused. */
  setChatHistory(history: ChatHistoryItem[]): void {
    this.ensureNotDisposed();
    this.chat.setChatHistory(history);
  }

  /** Asks the model; `images` go before the text. Streams through `onTextChunk`, like LlamaChatSession.prompt. */
  prompt(text: string, options: VisionPromptOptions = {}): Promise<string> {
    const run = this.queue.then(() => this.runPrompt(text, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async dispose(): Promise<void> {
    if (this.isDisposed) return;
    this.isDisposed = true;
    this.chat.dispose();
    this.injector.detach();
  }

  private async runPrompt(text: string, options: VisionPromptOptions): Promise<string> {
    this.ensureNotDisposed();
    const startedAt = performance.now();
    if (typeof text !== "string") throw new LeanVisionError("INVALID_INPUT", "prompt(text) needs text as a string");
    const imageInputs = options.images ?? [];
    if (!Array.isArray(imageInputs)) throw new LeanVisionError("INVALID_INPUT", "options.images must be an array of images");

    // Everything that can fail on bad input happens before anything is written to the chat or the KV cache.
    const spec = options.reducer === undefined ? this.reducer : toReducerSpec(options.reducer);
    const reducer = formatReducerSpec(spec);
    let cacheHits = 0;
    const timings = { encodeMs: 0, reduceMs: 0, projectMs: 0 };
    const turnImages: TurnImage[] = [];
    const injected: InjectedImage[] = [];
    const expectedEmbd = this.sequence.model.embeddingVectorSize;
    const requested = options.maxTokens ?? DEFAULT_MAX_TOKENS;
    if (!Number.isInteger(requested) || requested < 1) throw new LeanVisionError("INVALID_INPUT", `maxTokens must be a positive integer, got ${requested}`);
    // The tiles (LLaVA-1.6) and the token count of each image follow from its size: a message that
    // cannot fit is CONTEXT_OVERFLOW before anything is encoded (adaptive budgets are checked after).
    const decoded = [];
    for (const input of imageInputs) decoded.push(await this.vision.decodeImage(input));
    const predicted = decoded.map((rgb) => this.vision.predictTokens(rgb, spec));
    if (predicted.every((n): n is number => n !== null)) {
      this.ensureFits(`${predicted.map(previewMarker).join("")}\n${text}`, predicted.reduce((a, b) => a + b, 0));
    }
    if (this.vision.nEmbd !== expectedEmbd) {
      throw new LeanVisionError(
        "MMPROJ_MISMATCH",
        `the mmproj projects to ${this.vision.nEmbd} dimensions but the language model's embeddings have ${expectedEmbd}; use the mmproj made for this model`
      );
    }
    const record = (encoded: EncodedImage) => {
      if (encoded.fromCache) cacheHits++;
      timings.encodeMs += encoded.timings.encodeMs;
      timings.reduceMs += encoded.timings.reduceMs;
      timings.projectMs += encoded.timings.projectMs;
      turnImages.push(turnImage(encoded));
    };
    // Pipelined: the images' rows are injected as their tiles finish (the prompt starts now).
    const pending: Array<Promise<EncodedImage>> = [];
    const pipelined = this.pipeline && predicted.every((n) => n !== null);
    for (const input of decoded) {
      throwIfAborted(options.signal); // between images: an encode itself runs to its end
      if (pipelined) {
        const stream = await this.vision.streamImage(input, spec, { cache: true });
        pending.push(stream.done);
        injected.push(createInjectedImage(stream.embeddings, this.vision.nEmbd, stream.ready < stream.numTokens! ? stream : undefined));
        continue;
      }
      const encoded = await this.vision.encodeImage(input, spec, { cache: true });
      this.ensureNotDisposed();
      record(encoded);
      injected.push(createInjectedImage(encoded.embeddings, encoded.nEmbd));
    }
    const visualTokens = injected.reduce((sum, image) => sum + image.tokenCount, 0);
    const userText = injected.length > 0 ? `${injected.map((image) => image.marker).join("")}\n${text}` : text;
    // The answer may use the room the system prompt and this message leave: older turns can be
    // shifted out to make it, this turn (its images) never is.
    const room = this.sequence.contextSize - this.ensureFits(userText, visualTokens) - ANSWER_MARGIN;
    const maxTokens = Math.min(requested, room);
    throwIfAborted(options.signal);

    this.pruneImages();
    for (const image of injected) this.injector.register(image);
    const recorder = new TurnRecorder();
    this.recorder = recorder;
    let answer: string;
    let stopReason: LlamaVisionTurn["stopReason"];
    try {
      const result = await this.chat.promptWithMeta(userText, {
        maxTokens,
        temperature: options.temperature,
        seed: options.seed,
        signal: options.signal,
        onTextChunk: options.onTextChunk
      });
      answer = result.responseText;
      stopReason = result.stopReason !== "maxTokens" ? "endOfTurn" : maxTokens < requested ? "contextFull" : "maxTokens";
    } catch (error) {
      this.pruneImages(); // the failed turn is not in the history; drop its embeddings unless the KV cache holds them
      throw this.typedFailure(error, options.signal);
    } finally {
      this.recorder = undefined;
    }

    for (const encoded of await Promise.all(pending)) record(encoded);
    const prefillEnd = recorder.prefillEnd ?? performance.now();
    this.history.push({
      turn: this.history.length + 1,
      reducer,
      images: turnImages,
      imageCache: { hits: cacheHits, misses: turnImages.length - cacheHits },
      ...timings,
      prefillMs: recorder.prefillStart == null ? 0 : prefillEnd - recorder.prefillStart,
      ttftMs: prefillEnd - startedAt,
      visualTokens,
      evaluatedTokens: recorder.evaluatedTokens,
      reusedTokens: recorder.reusedTokens ?? this.sequence.nextTokenIndex,
      injectedTokens: recorder.injectedTokens,
      stopReason
    });
    return answer;
  }

  /**
   * The system prompt plus the new message must fit in the context: older turns can be shifted out,
   * an image cannot be split. Checked with the real chat template before anything is evaluated.
   */
  private ensureFits(userText: string, visualTokens: number): number {
    const model = this.sequence.model;
    const systemItems = this.chat.getChatHistory().filter((item) => item.type === "system");
    const { contextText } = this.chat.chatWrapper.generateContextState({
      chatHistory: [...systemItems, { type: "user", text: userText }, { type: "model", response: [] }]
    });
    const needed = contextText.tokenize(model.tokenizer).length;
    const contextSize = this.sequence.contextSize;
    if (needed + 1 >= contextSize) {
      throw new LeanVisionError(
        "CONTEXT_OVERFLOW",
        `this message needs ${needed} tokens (${visualTokens} of them visual) but the context holds ${contextSize}; ` +
          "use a larger contextSize, fewer images, or a reducer with a smaller budget (e.g. visionzip 54+10)"
      );
    }
    if (contextSize - needed - ANSWER_MARGIN < 1) {
      throw new LeanVisionError(
        "CONTEXT_OVERFLOW",
        `this message needs ${needed} tokens (${visualTokens} of them visual), which leaves no room for an answer in the ${contextSize}-token context; ` +
          "use a larger contextSize or a reducer with a smaller budget"
      );
    }
    return needed;
  }

  /** Frees the embeddings of images neither the chat history nor the KV cache refers to any more. */
  private pruneImages(): void {
    const historyText = JSON.stringify(this.chat.getChatHistory());
    const contextTokens = new Set<Token>(this.sequence.contextTokens);
    this.injector.prune((image) => historyText.includes(image.marker) || contextTokens.has(image.firstToken as Token));
  }

  /**
   * A failed prompt's error, typed: an abort is ABORTED, a session, context or model disposed during
   * the prompt is DISPOSED (node-llama-cpp throws a plain "Object is disposed" there).
   */
  private typedFailure(error: unknown, signal: AbortSignal | undefined): unknown {
    if (error instanceof LeanVisionError) return error;
    if (signal?.aborted) return new LeanVisionError("ABORTED", "the prompt was aborted by its signal; the chat is as it was before it", { cause: error });
    const sequence = this.injector.sequence;
    if (this.isDisposed || this.chat.disposed || sequence.disposed || sequence.context.disposed || sequence.model.disposed || /disposed/i.test(String((error as Error)?.message))) {
      return new LeanVisionError("DISPOSED", "the session, its context or its model was disposed during the prompt; create a new session", { cause: error });
    }
    return error;
  }

  private ensureNotDisposed(): void {
    if (this.isDisposed || this.chat.disposed) {
      throw new LeanVisionError("DISPOSED", "this VisionChatSession is disposed; create a new one");
    }
  }
}
