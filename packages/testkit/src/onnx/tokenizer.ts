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
