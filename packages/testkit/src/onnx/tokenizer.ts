// A real LLaMA/Vicuna tokenizer.json (the one LLaVA-1.5 uses), derived from llama.cpp's
// ggml-vocab-llama-spm.gguf: SentencePiece BPE with byte fallback, merges rebuilt from the piece
// scores the way Hugging Face's LlamaConverter does, plus LLaVA's `<image>` and `<pad>` tokens.
import { gguf } from "@huggingface/gguf";
import path from "node:path";
import type * as LlamaSource from "@leanvision/llama-adapter/llama-source";

export const IMAGE_TOKEN = "<image>";
const NORMAL = 1;

/** LLaVA-1.5's conversation format (vicuna_v1): "SYSTEM USER: <image>\n... ASSISTANT: reply</s>USER: ...". */
export const LLAVA_CHAT_TEMPLATE =
  "{% for message in messages %}" +
  "{% if message['role'] == 'system' %}{{ message['content'] + ' ' }}" +
  "{% elif message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}" +
  "{% else %}{{ 'ASSISTANT: ' + message['content'] + eos_token }}{% endif %}" +
  "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

export async function llamaSpmVocabPath(): Promise<string> {
  // Resolved at run time: the root vitest config aliases "@leanvision/llama-adapter" to its src/index.ts,
  // which would swallow this subpath; Node resolves it the same way either way.
  const source = (await import(import.meta.resolve("@leanvision/llama-adapter/llama-source"))) as typeof LlamaSource;
  return path.join(source.ensureLlamaSource(), "models", "ggml-vocab-llama-spm.gguf");
}

export interface LlavaTokenizerFiles {
  tokenizerJson: object;
  tokenizerConfig: object;
  imageTokenId: number;
  padTokenId: number;
  vocabSize: number;
}

export async function buildLlavaTokenizer(vocabPath?: string): Promise<LlavaTokenizerFiles> {
  vocabPath ??= await llamaSpmVocabPath();
  const { metadata } = await gguf(vocabPath, { allowLocalFile: true });
  const meta = metadata as unknown as Record<string, unknown>;
  const tokens = meta["tokenizer.ggml.tokens"] as string[];
  const scores = meta["tokenizer.ggml.scores"] as number[];
  const types = meta["tokenizer.ggml.token_type"] as number[];
  if (meta["tokenizer.ggml.model"] !== "llama" || !tokens?.length) {
    throw new Error(`${vocabPath} is not a SentencePiece (llama) vocabulary`);
  }
  const vocab: Record<string, number> = {};
  tokens.forEach((t, id) => (vocab[t] = id));

  // Every split of a normal piece into two known pieces is a merge, ranked by the piece's score.
  const merges: Array<{ pair: [string, string]; score: number; left: number; right: number }> = [];
  tokens.forEach((piece, id) => {
    if (types[id] !== NORMAL) return;
    const chars = Array.from(piece);
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join("");
      const right = chars.slice(i).join("");
      if (left in vocab && right in vocab) merges.push({ pair: [left, right], score: scores[id], left: vocab[left], right: vocab[right] });
    }
  });
  merges.sort((a, b) => b.score - a.score || a.left - b.left || a.right - b.right);

  const imageTokenId = tokens.length;
  const padTokenId = tokens.length + 1;
  const special = (id: number, content: string) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true
  });
  const tokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>"), special(imageTokenId, IMAGE_TOKEN), special(padTokenId, "<pad>")],
    normalizer: {
      type: "Sequence",
      normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }]
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } }
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 }
      ]
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: { ...vocab, [IMAGE_TOKEN]: imageTokenId, "<pad>": padTokenId },
      merges: merges.map((m) => m.pair)
    }
  };
  const tokenizerConfig = {
    tokenizer_class: "LlamaTokenizer",
    add_bos_token: true,
    add_eos_token: false,
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "<unk>",
    pad_token: "<pad>",
    legacy: true,
    clean_up_tokenization_spaces: false,
    model_max_length: 4096,
    padding_side: "left",
    chat_template: LLAVA_CHAT_TEMPLATE
  };
  return { tokenizerJson, tokenizerConfig, imageTokenId, padTokenId, vocabSize: padTokenId + 1 };
}

// ---- Qwen2 (byte-level BPE), the tokenizer of LLaVA-OneVision-Qwen2 and nanoLLaVA ----

export async function qwen2VocabPath(): Promise<string> {
  const source = (await import(import.meta.resolve("@leanvision/llama-adapter/llama-source"))) as typeof LlamaSource;
  return path.join(source.ensureLlamaSource(), "models", "ggml-vocab-qwen2.gguf");
}

/** Qwen2's pre-tokenizer split (tokenizer.json of every Qwen2 model). */
export const QWEN2_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Qwen's ChatML, with a default system prompt (Qwen2's own tokenizer template). */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}" +
  "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/**
 * LLaVA-OneVision's template (llava-hf chat_template.json): ChatML whose content is a list of
 * {type: "image" | "video" | "text"} parts, images first, each text part on its own line; plain string
 * content is accepted too. No default system prompt.
 */
export const ONEVISION_CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}" +
  "{% if message['content'] is string %}{{ '\\n' + message['content'] }}{% else %}" +
  "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<image>' }}{% elif content['type'] == 'video' %}{{ '<video>' }}{% endif %}{% endfor %}" +
  "{% for content in message['content'] %}{% if content['type'] == 'text' %}{{ '\\n' + content['text'] }}{% endif %}{% endfor %}" +
  "{% endif %}{{'<|im_end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface Qwen2TokenizerFiles {
  tokenizerJson: object;
  tokenizerConfig: Record<string, unknown>;
  /** added_tokens.json, special_tokens_map.json, vocab.json and merges.txt as the repos ship them. */
  addedTokens: Record<string, number>;
  specialTokensMap: object;
  vocabJson: Record<string, number>;
  mergesTxt: string;
  imageTokenId: number;
  /** Ids the embedding table covers (Qwen2-0.5B's 151936, padding rows included). */
  vocabSize: number;
}

/**
 * tokenizer.json for Qwen2, from llama.cpp's ggml-vocab-qwen2.gguf (151643 byte-level BPE tokens and their
 * merges, then <|endoftext|>, <|im_start|>, <|im_end|>, and padding rows up to 151936). `extra` special tokens
 * take the first padding ids: LLaVA's `<image>` is 151646 in both OneVision and nanoLLaVA, OneVision adds `<video>` 151647.
 */
export async function buildQwen2Tokenizer(extra: string[], chatTemplate: string, vocabPath?: string): Promise<Qwen2TokenizerFiles> {
  vocabPath ??= await qwen2VocabPath();
  const { metadata } = await gguf(vocabPath, { allowLocalFile: true });
  const meta = metadata as unknown as Record<string, unknown>;
  const tokens = meta["tokenizer.ggml.tokens"] as string[];
  const types = meta["tokenizer.ggml.token_type"] as number[];
  const merges = meta["tokenizer.ggml.merges"] as string[];
  if (meta["tokenizer.ggml.model"] !== "gpt2" || meta["tokenizer.ggml.pre"] !== "qwen2" || !tokens?.length) {
    throw new Error(`${vocabPath} is not the Qwen2 byte-level BPE vocabulary`);
  }
  const vocab: Record<string, number> = {};
  const special: Array<[string, number]> = [];
  tokens.forEach((t, id) => {
    if (types[id] === NORMAL) vocab[t] = id;
    else if (types[id] === 3) special.push([t, id]); // CONTROL: <|endoftext|>, <|im_start|>, <|im_end|>
  });
  let next = Math.max(...special.map(([, id]) => id)) + 1;
  for (const t of extra) special.push([t, next++]);
  const added = (content: string, id: number) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
  const tokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: special.map(([t, id]) => added(t, id)),
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [{ type: "Split", pattern: { Regex: QWEN2_SPLIT_REGEX }, behavior: "Isolated", invert: false }, byteLevel]
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map((m) => m.split(" "))
    }
  };
  const addedTokensDecoder = Object.fromEntries(special.map(([t, id]) => [String(id), { content: t, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }]));
  const tokenizerConfig: Record<string, unknown> = {
    add_prefix_space: false,
    added_tokens_decoder: addedTokensDecoder,
    additional_special_tokens: ["<|im_start|>", "<|im_end|>", ...extra],
    bos_token: null,
    chat_template: chatTemplate,
    clean_up_tokenization_spaces: false,
    eos_token: "<|im_end|>",
    errors: "replace",
    model_max_length: 32768,
    pad_token: "<|endoftext|>",
    padding_side: "left",
    split_special_tokens: false,
    tokenizer_class: "Qwen2Tokenizer",
    unk_token: null
  };
  const specialTokensMap = {
    additional_special_tokens: ["<|im_start|>", "<|im_end|>", ...extra],
    eos_token: { content: "<|im_end|>", lstrip: false, normalized: false, rstrip: false, single_word: false },
    pad_token: { content: "<|endoftext|>", lstrip: false, normalized: false, rstrip: false, single_word: false }
  };
  return {
    tokenizerJson,
    tokenizerConfig,
    addedTokens: Object.fromEntries([...special].sort((a, b) => a[0].localeCompare(b[0]))),
    specialTokensMap,
    vocabJson: vocab,
    mergesTxt: `#version: 0.2\n${merges.join("\n")}\n`,
    imageTokenId: special.find(([t]) => t === IMAGE_TOKEN)?.[1] ?? -1,
    vocabSize: tokens.length
  };
}
