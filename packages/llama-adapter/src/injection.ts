// How images enter node-llama-cpp's token stream (node-llama-cpp 3.22.1 has no embedding input).
//
// 1. An image becomes a *marker* in the user's message text. The model's tokenizer (patched once per
//    model) turns the marker into one placeholder token per visual embedding. Placeholder ids are
//    >= PLACEHOLDER_BASE, far outside any vocabulary, and unique per image in this process, so
//    node-llama-cpp's own prefix matching reuses an image's KV cache exactly when the same image
//    sits at the same place, and never mistakes one image for another.
// 2. Every decode of a sequence goes through `sequence._decodeTokens`. The SequenceInjector wraps it
//    on one sequence: text runs go to node-llama-cpp as usual; placeholder runs are decoded as the
//    image's embedding rows (native decodeEmbeddings) under node-llama-cpp's own context lock, and
//    recorded in `_contextTokens` / `_nextTokenIndex` like any evaluated token.
// So whenever node-llama-cpp re-evaluates history (history edited before an image, context shift,
// erased ranges), the image is re-injected. If a placeholder ever reached llama.cpp as a token,
// llama_decode would reject it as out of vocabulary: it can never be fed as text embeddings.
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { LeanVisionError } from "@leanvision/core";
import type { DecodeEmbeddings } from "./native-binding.js";
import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";

/** First placeholder token id. Vocabularies are far smaller; llama.cpp rejects ids >= n_vocab. */
export const PLACEHOLDER_BASE = 0x4000_0000;

export function isPlaceholderToken(token: number): boolean {
  return token >= PLACEHOLDER_BASE;
}


/** An image's projected embeddings, with the placeholder token ids that stand for them. */
export interface InjectedImage {
  /** Placeholder id of row 0; row r is `firstToken + r`. */
  readonly firstToken: number;
  readonly tokenCount: number;
  /** [tokenCount x nEmbd], row-major. */
  readonly embeddings: Float32Array;
  readonly nEmbd: number;
  /** Text that the patched tokenizer turns into this image's placeholder tokens. */
  readonly marker: string;
  /**
   * Set while the image is still being encoded (pipelined prefill): rows [0, ready) of `embeddings`
   * are final; decoding a placeholder waits for its row.
   */
  readonly pending?: { readonly ready: number; waitFor(rows: number): Promise<void> };
}

// Markers: U+E000 "lv" <process nonce> ":" <first placeholder id> ":" <count> U+E001 (private-use
// characters, so no ordinary text contains them). The nonce keeps a marker from another process
// (a saved chat history) from silently naming a different image here.
const PROCESS_NONCE = randomBytes(4).toString("hex");
const MARKER_RE = /\uE000lv([0-9a-f]{8}):(\d+):(\d+)\uE001/g;
const MARKER_START = "\uE000lv";
let nextPlaceholder = PLACEHOLDER_BASE;

export function createInjectedImage(embeddings: Float32Array, nEmbd: number, pending?: InjectedImage["pending"]): InjectedImage {
  if (!Number.isInteger(nEmbd) || nEmbd <= 0 || embeddings.length === 0 || embeddings.length % nEmbd !== 0) {
    throw new LeanVisionError("INVALID_INPUT", `image embeddings of length ${embeddings.length} are not rows of ${nEmbd} values`);
  }
  const tokenCount = embeddings.length / nEmbd;
  const firstToken = nextPlaceholder;
  nextPlaceholder += tokenCount;
  const marker = `\uE000lv${PROCESS_NONCE}:${firstToken}:${tokenCount}\uE001`;
  return { firstToken, tokenCount, embeddings, nEmbd, marker, ...(pending && { pending }) };
}

/**
 * A marker for `tokenCount` placeholders that stands for no image: text holding it tokenizes to the
 * same number of tokens as with a real image's marker (to check that a message fits before its
 * images are encoded). Never decode it: no image is registered for its placeholders.
 */
export function previewMarker(tokenCount: number): string {
  return `\uE000lv${PROCESS_NONCE}:${PLACEHOLDER_BASE}:${tokenCount}\uE001`;
}

/** Placeholder tokens a text's markers expand to, in order (for tests and bookkeeping). */
export function markersIn(text: string): Array<{ firstToken: number; tokenCount: number }> {
  return [...text.matchAll(MARKER_RE)].map((m) => ({ firstToken: Number(m[2]), tokenCount: Number(m[3]) }));
}

/** Replaces markers by a readable stand-in (for showing a chat history). */
export function replaceMarkers(text: string, replacement: string): string {
  return text.replace(MARKER_RE, replacement);
}

type Tokenize = LlamaModel["tokenize"];
type Detokenize = LlamaModel["detokenize"];
const patchedModels = new WeakSet<object>();

/**
 * Makes `model.tokenize` / `model.tokenizer` expand image markers into placeholder tokens and
 * `model.detokenize` ignore placeholders. Idempotent; text without markers is tokenized exactly as
 * before, so other users of the model see no difference.
 */
export function installPlaceholderTokenizer(model: LlamaModel): void {
  if (patchedModels.has(model)) return;
  for (const name of ["tokenize", "tokenizer", "detokenize", "isSpecialToken", "isEogToken"] as const) {
    const descriptor = Object.getOwnPropertyDescriptor(model, name);
    if (descriptor == null || typeof descriptor.value !== "function" || !descriptor.writable) {
      throw internalsError(`LlamaModel.${name} is not a writable own method`);
    }
  }
  const original = {
    tokenize: model.tokenize,
    detokenize: model.detokenize,
    isSpecialToken: model.isSpecialToken,
    isEogToken: model.isEogToken
  };

  const withoutPlaceholders = (tokens: readonly Token[]): Token[] =>
    tokens.some(isPlaceholderToken) ? tokens.filter((t) => !isPlaceholderToken(t)) : (tokens as Token[]);
  const detokenize = ((tokens: readonly Token[], specialTokens?: boolean, lastTokens?: readonly Token[]) =>
    original.detokenize(withoutPlaceholders(tokens), specialTokens, lastTokens && withoutPlaceholders(lastTokens))) as Detokenize;

  const tokenize = ((text: string, specialTokens?: boolean | "builtin", options?: "trimLeadingSpace") => {
    if (specialTokens === "builtin" || typeof text !== "string" || !text.includes(MARKER_START)) {
      return original.tokenize(text, specialTokens as boolean, options);
    }
    const tokens: Token[] = [];
    let last = 0;
    const tokenizePiece = (piece: string) => {
      if (piece.includes(MARKER_START)) {
        throw new LeanVisionError(
          "CONTEXT_OVERFLOW",
          "an image marker in the chat history was cut (an image cannot be partly in the context); use a larger context or fewer images"
        );
      }
      // Text after an image is tokenized on its own (as mtmd does), without a leading space.
      if (piece !== "") tokens.push(...original.tokenize(piece, specialTokens as boolean, last === 0 ? options : "trimLeadingSpace"));
    };
    for (const match of text.matchAll(MARKER_RE)) {
      tokenizePiece(text.slice(last, match.index));
      if (match[1] !== PROCESS_NONCE) {
        throw new LeanVisionError(
          "INVALID_INPUT",
          "the chat history holds an image from another process (its embeddings are not here); remove it, or prompt with the image again"
        );
      }
      const first = Number(match[2]);
      const count = Number(match[3]);
      for (let i = 0; i < count; i++) tokens.push((first + i) as Token);
      last = match.index! + match[0].length;
    }
    tokenizePiece(text.slice(last));
    return tokens;
  }) as Tokenize;

  const isSpecialToken = (token: Token | undefined) => token != null && !isPlaceholderToken(token) && original.isSpecialToken(token);
  const isEogToken = (token: Token | undefined) => token != null && !isPlaceholderToken(token) && original.isEogToken(token);
  Object.assign(tokenize, { detokenize, isSpecialToken, isEogToken });
  Object.freeze(tokenize);
  Object.assign(model, { tokenize, tokenizer: tokenize, detokenize, isSpecialToken, isEogToken });
  patchedModels.add(model);
}

/** What one (hooked) decode of the sequence did; the chat session turns these into turn timings. */
export interface DecodeEvent {
  /** The sequence's next position when the decode started (= tokens reused before it). */
  startIndex: number;
  textTokens: number;
  visualTokens: number;
  /** Whether a logit was requested, i.e. this decode produced the next token. */
  sampled: boolean;
  startedAt: number;
  endedAt: number;
}

/** The private parts of node-llama-cpp 3.22.1 this module relies on, checked at attach time. */
interface SequenceInternals {
  _sequenceId: number;
  _contextTokens: Token[];
  _nextTokenIndex: number;
  _loadedTokenPredictions: unknown[];
  _decodeTokens: (...args: unknown[]) => Promise<unknown[]>;
  _context: ContextInternals;
}
interface ContextInternals {
  _ctx: object;
  _backendContextDisposeGuard: { createPreventDisposalHandle(): { dispose(): void } };
  contextSize: number;
  batchSize: number;
}
type WithLock = <T>(scope: [object, string], callback: () => Promise<T>) => Promise<T>;

/**
 * Attaches to one context sequence and decodes placeholder tokens as image embeddings.
 * Register the images whose placeholders may appear; `detach()` restores the sequence.
 */
export class SequenceInjector {
  private readonly images = new Map<number, InjectedImage>();
  private readonly internals: SequenceInternals;
  private readonly originalDecode: (...args: unknown[]) => Promise<unknown[]>;

  constructor(
    readonly sequence: LlamaContextSequence,
    private readonly decodeEmbeddings: DecodeEmbeddings,
    private readonly onDecode?: (event: DecodeEvent) => void
  ) {
    this.internals = sequenceInternals(sequence);
    if (Object.hasOwn(sequence, "_decodeTokens")) {
      throw new LeanVisionError("INVALID_INPUT", "this context sequence already takes images for another session; dispose that session or use another sequence");
    }
    if (sequence.tokenPredictor != null) {
      throw new LeanVisionError("INVALID_INPUT", "a context sequence with a token predictor cannot take images; create the sequence without `tokenPredictor`");
    }
    installPlaceholderTokenizer(sequence.model);
    this.originalDecode = this.internals._decodeTokens;
    const injector = this;
    // An own property shadows the prototype method for this sequence only.
    this.internals._decodeTokens = function (this: unknown, ...args: unknown[]) {
      return injector.decode(args);
    };
  }

  register(image: InjectedImage): void {
    this.images.set(image.firstToken, image);
  }

  unregister(image: InjectedImage): void {
    this.images.delete(image.firstToken);
  }

  /** Keeps only the images `keep` says are still referenced (frees their embeddings). */
  prune(keep: (image: InjectedImage) => boolean): void {
    for (const image of [...this.images.values()]) if (!keep(image)) this.images.delete(image.firstToken);
  }

  detach(): void {
    if (this.internals._decodeTokens !== this.originalDecode) delete (this.internals as Partial<SequenceInternals>)._decodeTokens;
    this.images.clear();
  }

  private async decode(args: unknown[]): Promise<unknown[]> {
    const [tokens, logits, evaluationPriority, tokenMeter, contextShiftOptions, logitDataMapper, afterBatchAction] = args as [
      Token[],
      Array<boolean | undefined>,
      unknown,
      { useTokens(count: number, type: "input" | "output"): void } | undefined,
      unknown,
      (batchLogitIndex: number, tokenIndex: number) => unknown,
      ((sequenceStateLength: number) => unknown) | undefined
    ];
    const event: DecodeEvent = {
      startIndex: this.internals._nextTokenIndex,
      textTokens: 0,
      visualTokens: 0,
      sampled: logits.some(Boolean),
      startedAt: performance.now(),
      endedAt: 0
    };
    let result: unknown[];
    if (!tokens.some(isPlaceholderToken)) {
      result = await this.originalDecode.apply(this.sequence, args);
      event.textTokens = tokens.length;
    } else {
      result = [];
      for (const run of splitRuns(tokens)) {
        const runTokens = tokens.slice(run.start, run.end);
        if (run.placeholders) {
          if (logits.slice(run.start, run.end).some(Boolean)) {
            throw new LeanVisionError("INVALID_INPUT", "an image cannot be the last input before generation; put text after it");
          }
          await this.inject(runTokens, tokenMeter, afterBatchAction);
          event.visualTokens += runTokens.length;
          continue;
        }
        const part = await this.originalDecode.call(
          this.sequence,
          runTokens,
          logits.slice(run.start, run.end),
          evaluationPriority,
          tokenMeter,
          contextShiftOptions,
          (batchLogitIndex: number, tokenIndex: number) => logitDataMapper(batchLogitIndex, tokenIndex + run.start),
          afterBatchAction
        );
        for (const key of Object.keys(part)) result[run.start + Number(key)] = part[Number(key)];
        event.textTokens += runTokens.length;
      }
    }
    event.endedAt = performance.now();
    this.onDecode?.(event);
    return result;
  }

  /** Decodes a run of placeholder tokens as the embedding rows they stand for. */
  private async inject(
    tokens: Token[],
    tokenMeter: { useTokens(count: number, type: "input" | "output"): void } | undefined,
    afterBatchAction: ((sequenceStateLength: number) => unknown) | undefined
  ): Promise<void> {
    for (const group of this.rowGroups(tokens)) {
      // A pending image (pipelined prefill): its rows are decoded as they become final.
      for (let done = 0; done < group.count; ) {
        let count = group.count - done;
        if (group.image.pending) {
          await group.image.pending.waitFor(group.firstRow + done + 1);
          count = Math.min(count, group.image.pending.ready - group.firstRow - done);
        }
        await this.injectRows(group.image, group.firstRow + done, count, tokens.slice(group.offset + done, group.offset + done + count));
        tokenMeter?.useTokens(count, "input");
        await afterBatchAction?.(this.internals._nextTokenIndex);
        done += count;
      }
    }
  }

  /** Decodes rows [firstRow, firstRow + count) of an image at the sequence's next positions, as `placeholders`. */
  private async injectRows(image: InjectedImage, firstRow: number, count: number, placeholders: Token[]): Promise<void> {
    const sequence = this.internals;
    const context = sequence._context;
    if (sequence._loadedTokenPredictions.length > 0) {
      throw new LeanVisionError("INVALID_INPUT", "cannot inject an image while token predictions are loaded in the sequence");
    }
    if (sequence._nextTokenIndex + count > context.contextSize - 1) {
      throw new LeanVisionError(
        "CONTEXT_OVERFLOW",
        `an image of ${count} visual tokens at position ${sequence._nextTokenIndex} does not fit in the context of ` +
          `${context.contextSize} tokens; use a larger contextSize or a reducer with a smaller budget`
      );
    }
    const rows = image.embeddings.subarray(firstRow * image.nEmbd, (firstRow + count) * image.nEmbd);
    await withContextLock(this.sequence.context, async () => {
      const preventDisposal = context._backendContextDisposeGuard.createPreventDisposalHandle();
      try {
        await this.decodeEmbeddings(context._ctx, sequence._sequenceId, sequence._nextTokenIndex, rows, count, image.nEmbd, context.batchSize);
      } finally {
        preventDisposal.dispose();
      }
      sequence._contextTokens = sequence._contextTokens.concat(placeholders);
      sequence._nextTokenIndex += count;
    });
  }

  /** Splits placeholder tokens into runs of consecutive rows of one image. */
  private rowGroups(tokens: Token[]): Array<{ image: InjectedImage; firstRow: number; count: number; offset: number }> {
    const groups: Array<{ image: InjectedImage; firstRow: number; count: number; offset: number }> = [];
    for (let i = 0; i < tokens.length; i++) {
      const image = this.imageOf(tokens[i]);
      const row = tokens[i] - image.firstToken;
      const last = groups.at(-1);
      if (last != null && last.image === image && last.firstRow + last.count === row) last.count++;
      else groups.push({ image, firstRow: row, count: 1, offset: i });
    }
    return groups;
  }

  private imageOf(token: Token): InjectedImage {
    for (const image of this.images.values()) {
      if (token >= image.firstToken && token < image.firstToken + image.tokenCount) return image;
    }
    throw new LeanVisionError(
      "INVALID_INPUT",
      `placeholder token ${token} belongs to no image of this session (its image was released, or the sequence ` +
        "state comes from another session); start a new chat or prompt with the image again"
    );
  }
}

function splitRuns(tokens: Token[]): Array<{ start: number; end: number; placeholders: boolean }> {
  const runs: Array<{ start: number; end: number; placeholders: boolean }> = [];
  for (let i = 0; i < tokens.length; i++) {
    const placeholders = isPlaceholderToken(tokens[i]);
    const last = runs.at(-1);
    if (last != null && last.placeholders === placeholders) last.end = i + 1;
    else runs.push({ start: i, end: i + 1, placeholders });
  }
  return runs;
}

function sequenceInternals(sequence: LlamaContextSequence): SequenceInternals {
  const s = sequence as unknown as Partial<SequenceInternals>;
  const c = (s._context ?? {}) as Partial<ContextInternals>;
  const missing = [
    typeof s._sequenceId !== "number" && "LlamaContextSequence._sequenceId",
    !Array.isArray(s._contextTokens) && "LlamaContextSequence._contextTokens",
    typeof s._nextTokenIndex !== "number" && "LlamaContextSequence._nextTokenIndex",
    !Array.isArray(s._loadedTokenPredictions) && "LlamaContextSequence._loadedTokenPredictions",
    typeof s._decodeTokens !== "function" && "LlamaContextSequence._decodeTokens",
    (c._ctx == null || typeof c._ctx !== "object") && "LlamaContext._ctx",
    typeof c._backendContextDisposeGuard?.createPreventDisposalHandle !== "function" && "LlamaContext._backendContextDisposeGuard"
  ].filter((m): m is string => typeof m === "string");
  if (missing.length > 0) throw internalsError(`missing ${missing.join(", ")}`);
  if (sequence.disposed) throw new LeanVisionError("DISPOSED", "the context sequence is disposed; create a new one with context.getSequence()");
  return s as SequenceInternals;
}

function internalsError(detail: string): LeanVisionError {
  return new LeanVisionError(
    "NATIVE_BUILD",
    `the installed node-llama-cpp is not the one LeanVision was built for (${detail}); install exactly node-llama-cpp 3.22.1`
  );
}

/**
 * Runs `callback` holding node-llama-cpp's own lock of `context` (the one its batch dispatch takes),
 * so nothing else decodes into the context meanwhile.
 */
export async function withContextLock<T>(context: object, callback: () => Promise<T>): Promise<T> {
  const withLock = await loadWithLock();
  return withLock([context, "context"], callback);
}

let withLockPromise: Promise<WithLock> | undefined;
/** node-llama-cpp's locks are keyed in its own copy of lifecycle-utils, so load exactly that copy. */
function loadWithLock(): Promise<WithLock> {
  withLockPromise ??= (async () => {
    const nodeLlamaCppEntry = createRequire(import.meta.url).resolve("node-llama-cpp");
    const lifecycleUtils = createRequire(nodeLlamaCppEntry).resolve("lifecycle-utils");
    const module = (await import(pathToFileURL(lifecycleUtils).href)) as { withLock?: WithLock };
    if (typeof module.withLock !== "function") throw internalsError("lifecycle-utils has no withLock");
    return module.withLock;
  })();
  return withLockPromise;
}
