// Malformed mmproj files never crash the process. A corpus of corrupted variants of the tiny profile's
// mmproj (every tensor missing in turn, wrong shapes and types, every hyperparameter out of range or
// of the wrong GGUF type, NaN values, broken GGUF structure, truncations, random header bytes
// flipped) is generated here, then each variant is loaded and used to encode an image in a child
// process (test/support/mmproj-probe.ts), so that a crash shows up as a signal pinned to its file.
// Every variant must end in a typed LeanVisionError with the expected code (and naming the key or
// tensor at fault), or in a success this file documents.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureLlavaGguf, GGUF_PROFILES, GgmlType, GgufValueType, kv, mmprojFile, writeGguf } from "@leanvision/testkit";
import type { GgufFile, GgufTensor, GgufValue } from "@leanvision/testkit";
import { readGgufHeader } from "../src/gguf.js";
import type { ProbeJob, ProbeResult } from "./support/mmproj-probe.js";

/** What a variant must end in: a typed error (code, and what the message names), or a documented success. */
/** `ok`: encodes the probe image; `tiles` (default 1) is how many tiles mtmd cuts it into. */
type Expectation = { code: string; names?: RegExp } | { ok: string; tiles?: number } | { typedOrOk: string };
interface Variant {
  id: string;
  expect: Expectation;
  /** Writes the variant to `file`. */
  write(file: string): Promise<void>;
}

const supportDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "support");
const base = mmprojFile(GGUF_PROFILES.tiny);
const tiny = GGUF_PROFILES.tiny.vision;
const layers = tiny.towerLayers - 1;

// ---- variant builders -------------------------------------------------------------------------

function setKey(file: GgufFile, key: string, value: GgufValue | undefined): GgufFile {
  const metadata = file.metadata.filter(([k]) => k !== key);
  return { ...file, metadata: value === undefined ? metadata : [...metadata, [key, value]] };
}
function dropTensor(file: GgufFile, name: string): GgufFile {
  if (!file.tensors.some((t) => t.name === name)) throw new Error(`no tensor ${name}`);
  return { ...file, tensors: file.tensors.filter((t) => t.name !== name) };
}
function changeTensor(file: GgufFile, name: string, change: Partial<GgufTensor>): GgufFile {
  if (!file.tensors.some((t) => t.name === name)) throw new Error(`no tensor ${name}`);
  return { ...file, tensors: file.tensors.map((t) => (t.name === name ? { ...t, ...change } : t)) };
}
function addTensor(file: GgufFile, name: string, shape: number[], type = GgmlType.F32, value = 0.01): GgufFile {
  return { ...file, tensors: [...file.tensors, { name, shape, type, source: { kind: "const", value } }] };
}

const written = (id: string, expect: Expectation, file: GgufFile): Variant => ({ id, expect, write: async (out) => void (await writeGguf(out, file)) });

/** A variant made by editing the bytes of a written file (what the writer refuses to write: NaN, bad type ids, ...). */
function patched(id: string, expect: Expectation, file: GgufFile, patch: (bytes: Buffer) => void): Variant {
  return {
    id,
    expect,
    write: async (out) => {
      await writeGguf(out, file);
      const bytes = readFileSync(out);
      patch(bytes);
      writeFileSync(out, bytes);
    },
  };
}

/** Offset just after a metadata key's name (where its u32 value type starts). */
function keyEnd(bytes: Buffer, key: string): number {
  const name = Buffer.from(key);
  const entry = Buffer.alloc(8 + name.length);
  entry.writeBigUInt64LE(BigInt(name.length));
  name.copy(entry, 8);
  const at = bytes.indexOf(entry);
  if (at < 0) throw new Error(`no key ${key}`);
  return at + entry.length;
}
/** Offset of a scalar key's value, or of an array key's first item. */
function valueAt(bytes: Buffer, key: string): number {
  const at = keyEnd(bytes, key);
  return bytes.readUInt32LE(at) === GgufValueType.ARRAY ? at + 4 + 4 + 8 : at + 4;
}
/** Offset just after a tensor info's name (its u32 dimension count). */
function tensorInfoAt(bytes: Buffer, name: string): number {
  return keyEnd(bytes, name);
}
function tensorTypeAt(bytes: Buffer, name: string): number {
  const at = tensorInfoAt(bytes, name);
  return at + 4 + 8 * bytes.readUInt32LE(at);
}

const truncated = (id: string, expect: Expectation, length: (bytes: Buffer) => number): Variant => ({
  id,
  expect,
  write: async (out) => {
    await writeGguf(out, base);
    const bytes = readFileSync(out);
    writeFileSync(out, bytes.subarray(0, length(bytes)));
  },
});

/** mulberry32, for reproducible bit flips. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- the corpus -------------------------------------------------------------------------------

const invalid = (names: RegExp | string): Expectation => ({ code: "INVALID_MODEL", names: typeof names === "string" ? new RegExp(escape(names)) : names });
const unsupported = (names: RegExp | string): Expectation => ({ code: "UNSUPPORTED_MODEL", names: typeof names === "string" ? new RegExp(escape(names)) : names });
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const u32 = (key: string, value: number, names = key) => written(`${key}=${value}`, invalid(names), setKey(base, key, kv.u32(value)));

function corpus(): Variant[] {
  const v: Variant[] = [
    written("unmodified", { ok: "the tiny profile's own mmproj" }, base),
  ];

  // Every tensor missing in turn: each is one the llava graph reads (those of issue 14 among them:
  // v.position_embd.weight, v.blk.1.attn_q.weight and v.blk.2.attn_k.weight crashed, v.pre_ln.weight,
  // v.blk.0.ln1.weight, v.class_embd and v.blk.2.ffn_down.bias loaded silently).
  for (const t of base.tensors) v.push(written(`missing ${t.name}`, invalid(t.name === "v.pre_ln.weight" ? "v.pre_ln.weight" : t.name), dropTensor(base, t.name)));
  v.push(written("missing v.pre_ln (weight and bias)", invalid("v.class_embd"), dropTensor(dropTensor(base, "v.pre_ln.weight"), "v.pre_ln.bias")));

  // Hyperparameters out of range, or disagreeing with the weights.
  v.push(
    u32("clip.vision.image_size", 3360), // 57,601 tokens: a 50 GB attention (crashed)
    // Not a multiple of the patch size (loaded silently before): like SigLIP-so400m-patch14-384 (384 px,
    // 27x27 patches), the patch convolution drops the remainder; the grid is still 24x24.
    written("clip.vision.image_size=337", { ok: "the patch grid is floor(337 / 14) = 24, which the position table matches" },
      setKey(base, "clip.vision.image_size", kv.u32(337))),
    u32("clip.vision.image_size", 0),
    u32("clip.vision.image_size", 8400),
    u32("clip.vision.image_size", 168, "v.position_embd.weight"), // a valid grid, but the position table is for 336
    u32("clip.vision.patch_size", 1), // crashed (GGML_ASSERT)
    u32("clip.vision.patch_size", 7, "v.patch_embd.weight"), // crashed
    u32("clip.vision.patch_size", 13, "v.patch_embd.weight"), // crashed
    u32("clip.vision.patch_size", 28, "v.patch_embd.weight"), // loaded silently
    u32("clip.vision.patch_size", 0),
    u32("clip.vision.attention.head_count", 1), // loaded silently
    u32("clip.vision.attention.head_count", 128), // loaded silently (head dimension 1)
    u32("clip.vision.attention.head_count", 3),
    u32("clip.vision.attention.head_count", 0),
    u32("clip.vision.attention.head_dim", 16),
    u32("clip.vision.embedding_length", 64, "v.patch_embd.weight"),
    u32("clip.vision.embedding_length", 0),
    u32("clip.vision.embedding_length", 4_000_000_000),
    u32("clip.vision.feed_forward_length", 511, "ffn_up.weight"),
    u32("clip.vision.block_count", layers - 1, "clip.vision.feature_layer"), // the feature layer [3] is now past the last layer
    u32("clip.vision.block_count", layers + 1, `v.blk.${layers}.`),
    u32("clip.vision.block_count", 0),
    written("layer_norm_epsilon=-1", invalid("layer_norm_epsilon"), setKey(base, "clip.vision.attention.layer_norm_epsilon", kv.f32(-1))), // crashed
    written("layer_norm_epsilon=0", invalid("layer_norm_epsilon"), setKey(base, "clip.vision.attention.layer_norm_epsilon", kv.f32(0))),
    written("layer_norm_epsilon=10", invalid("layer_norm_epsilon"), setKey(base, "clip.vision.attention.layer_norm_epsilon", kv.f32(10))),
    written("feature_layer=[-5]", invalid("feature_layer"), setKey(base, "clip.vision.feature_layer", kv.arr(GgufValueType.INT32, [-5]))), // loaded silently
    written("feature_layer=[]", invalid("feature_layer"), setKey(base, "clip.vision.feature_layer", kv.arr(GgufValueType.INT32, []))), // loaded silently
    written("feature_layer=[4]", invalid("feature_layer"), setKey(base, "clip.vision.feature_layer", kv.arr(GgufValueType.INT32, [layers + 1]))),
    written("feature_layer=[0]", unsupported("feature_layer"), setKey(base, "clip.vision.feature_layer", kv.arr(GgufValueType.INT32, [0]))),
    written("feature_layer=[1,3]", unsupported("feature_layer"), setKey(base, "clip.vision.feature_layer", kv.arr(GgufValueType.INT32, [1, 3]))),
    written("image_mean with 2 values", invalid("image_mean"), setKey(base, "clip.vision.image_mean", kv.arr(GgufValueType.FLOAT32, [0.5, 0.5]))),
    written("image_std 0", invalid("image_std"), setKey(base, "clip.vision.image_std", kv.arr(GgufValueType.FLOAT32, [0.26, 0, 0.27]))),
    written("use_gelu and use_silu", invalid("use_silu"), setKey(setKey(base, "clip.use_gelu", kv.bool(true)), "clip.use_silu", kv.bool(true))),
    written("pinpoints odd count", invalid("image_grid_pinpoints"), setKey(base, "clip.vision.image_grid_pinpoints", kv.arr(GgufValueType.INT32, [336, 672, 672]))),
    written("pinpoints not whole tiles", invalid("image_grid_pinpoints"), setKey(base, "clip.vision.image_grid_pinpoints", kv.arr(GgufValueType.INT32, [336, 500]))),
    written("pinpoints zero", invalid("image_grid_pinpoints"), setKey(base, "clip.vision.image_grid_pinpoints", kv.arr(GgufValueType.INT32, [0, 336]))),
    written("pinpoints 81 tiles", invalid("image_grid_pinpoints"), setKey(base, "clip.vision.image_grid_pinpoints", kv.arr(GgufValueType.INT32, [3024, 3024]))),
  );

  // Required keys missing, and keys of a GGUF type other than the one llama.cpp's getter asserts.
  for (const key of ["clip.vision.embedding_length", "clip.vision.attention.head_count", "clip.vision.feed_forward_length", "clip.vision.block_count",
    "clip.vision.projection_dim", "clip.vision.attention.layer_norm_epsilon", "clip.vision.image_size", "clip.vision.patch_size",
    "clip.vision.image_mean", "clip.vision.image_std", "clip.has_vision_encoder", "clip.projector_type"]) {
    v.push(written(`missing key ${key}`, invalid(key === "clip.projector_type" ? "projector type" : key), setKey(base, key, undefined)));
  }
  v.push(written("missing key general.architecture", { code: "INVALID_INPUT", names: /not a vision mmproj/ }, setKey(base, "general.architecture", undefined)));
  const retyped: Array<[string, GgufValue]> = [
    ["clip.vision.image_size", kv.i32(336)],
    ["clip.vision.image_size", kv.str("336")],
    ["clip.vision.patch_size", { type: GgufValueType.UINT64, value: 14n }],
    ["clip.vision.block_count", kv.i32(layers)],
    ["clip.vision.projection_dim", kv.f32(128)],
    ["clip.vision.attention.layer_norm_epsilon", { type: GgufValueType.FLOAT64, value: 1e-5 }],
    ["clip.has_vision_encoder", { type: GgufValueType.UINT8, value: 1 }],
    ["clip.projector_type", kv.u32(1)],
    ["clip.use_gelu", kv.u32(0)],
    ["general.name", kv.u32(7)],
    ["clip.minicpmv_version", kv.u32(2)],
    ["clip.vision.image_mean", kv.arr(GgufValueType.INT32, [0, 0, 0])],
    ["clip.vision.feature_layer", kv.arr(GgufValueType.UINT32, [layers])],
    ["clip.vision.image_grid_pinpoints", kv.arr(GgufValueType.UINT32, [336, 672])],
  ];
  for (const [key, value] of retyped) v.push(written(`${key} as ${GgufValueType[value.type]}`, invalid(key), setKey(base, key, value)));

  // Other projector types and modalities: well-formed files LeanVision does not run.
  v.push(
    written("projector ldp", unsupported("'ldp'"), setKey(base, "clip.projector_type", kv.str("ldp"))),
    written("projector mlp_norm", unsupported("'mlp_norm'"), setKey(base, "clip.projector_type", kv.str("mlp_norm"))),
    written("projector qwen2vl", unsupported("'qwen2vl'"), setKey(base, "clip.projector_type", kv.str("qwen2vl"))),
    written("Yi-style mm.3", unsupported("mm.3.weight"), addTensor(base, "mm.3.weight", [256, 256])),
    written("audio encoder too", unsupported("has_audio_encoder"), setKey(base, "clip.has_audio_encoder", kv.bool(true))),
    written("no vision encoder", unsupported("no vision encoder"), setKey(base, "clip.has_vision_encoder", kv.bool(false))),
    written("gated FFN", unsupported("v.blk.0.ffn_gate.weight"), addTensor(base, "v.blk.0.ffn_gate.weight", [128, 512])),
    written("stacked feature layers", unsupported("mm.0.weight"), changeTensor(base, "mm.0.weight", { shape: [256, 256] })),
  );

  // Tensor shapes and types.
  v.push(
    written("patch_embd 7x28x3x128", invalid("v.patch_embd.weight"), changeTensor(base, "v.patch_embd.weight", { shape: [7, 28, 3, 128] })), // crashed
    written("attn_q 64x256", invalid("v.blk.1.attn_q.weight"), changeTensor(base, "v.blk.1.attn_q.weight", { shape: [64, 256] })), // crashed
    written("position_embd 576 rows", invalid("v.position_embd.weight"), changeTensor(base, "v.position_embd.weight", { shape: [128, 576] })),
    written("class_embd 64", invalid("v.class_embd"), changeTensor(base, "v.class_embd", { shape: [64] })),
    written("ln1 2-D", invalid("v.blk.0.ln1.weight"), changeTensor(base, "v.blk.0.ln1.weight", { shape: [128, 2] })),
    written("mm.0 hidden 128", invalid("mm.0.bias"), changeTensor(base, "mm.0.weight", { shape: [128, 128] })),
    written("mm.2 output 512", { code: "MMPROJ_MISMATCH", names: /512/ },
      changeTensor(changeTensor(base, "mm.2.weight", { shape: [256, 512] }), "mm.2.bias", { shape: [512] })),
    written("image_newline 128", invalid("v.image_newline"), addTensor(base, "v.image_newline", [128])),
    written("post_ln weight only", invalid("v.post_ln"), addTensor(base, "v.post_ln.weight", [128], GgmlType.F32, 1)),
    written("tensor beyond block_count", invalid("v.blk.3.attn_q.weight"), addTensor(base, `v.blk.${layers}.attn_q.weight`, [128, 128])),
    written("duplicate tensor", invalid("twice"), { ...base, tensors: [...base.tensors, base.tensors[1]] }),
    written("bias f16", invalid("v.blk.0.ln1.bias"), changeTensor(base, "v.blk.0.ln1.bias", { type: GgmlType.F16 })),
    written("class_embd f16", invalid("v.class_embd"), changeTensor(base, "v.class_embd", { type: GgmlType.F16 })),
    written("mm.2.bias q8_0", invalid("mm.2.bias"), changeTensor(base, "mm.2.bias", { type: GgmlType.Q8_0 })),
    patched("patch kernel typed q8_0", invalid("v.patch_embd.weight"), base, (b) => b.writeUInt32LE(GgmlType.Q8_0, tensorTypeAt(b, "v.patch_embd.weight"))),
    patched("mm.0.bias typed i32", invalid("mm.0.bias"), base, (b) => b.writeUInt32LE(26, tensorTypeAt(b, "mm.0.bias"))),
    patched("ln2 typed f64", invalid("v.blk.1.ln2.weight"), base, (b) => b.writeUInt32LE(28, tensorTypeAt(b, "v.blk.1.ln2.weight"))),
    patched("attn_q typed iq4_nl", unsupported("v.blk.0.attn_q.weight"), base, (b) => b.writeUInt32LE(20, tensorTypeAt(b, "v.blk.0.attn_q.weight"))),
    patched("type id 99", invalid("v.blk.0.attn_k.weight"), base, (b) => b.writeUInt32LE(99, tensorTypeAt(b, "v.blk.0.attn_k.weight"))),
    patched("5 dimensions", invalid("mm.0.weight"), base, (b) => b.writeUInt32LE(5, tensorInfoAt(b, "mm.0.weight"))),
    patched("tensor offset off by 32", invalid("mm.2.weight"), base, (b) => {
      const at = tensorTypeAt(b, "mm.2.weight") + 4;
      b.writeBigUInt64LE(b.readBigUInt64LE(at) + 32n, at);
    }),
  );

  // NaN and infinity where the writer refuses to put them.
  const nanKey = (id: string, key: string, item: number, value: number) =>
    patched(id, invalid(key), base, (b) => b.writeFloatLE(value, valueAt(b, key) + 4 * item));
  v.push(
    nanKey("layer_norm_epsilon NaN", "clip.vision.attention.layer_norm_epsilon", 0, Number.NaN), // crashed
    nanKey("layer_norm_epsilon Inf", "clip.vision.attention.layer_norm_epsilon", 0, Number.POSITIVE_INFINITY),
    nanKey("image_mean NaN", "clip.vision.image_mean", 0, Number.NaN),
    nanKey("image_std Inf", "clip.vision.image_std", 2, Number.POSITIVE_INFINITY),
  );

  // GGUF structure.
  v.push(
    patched("GGUF version 1", invalid("version"), base, (b) => b.writeUInt32LE(1, 4)),
    patched("GGUF version 4", invalid("version"), base, (b) => b.writeUInt32LE(4, 4)),
    patched("tensor count 2^40", invalid("tensor count"), base, (b) => b.writeBigUInt64LE(1n << 40n, 8)),
    patched("metadata count 2^40", invalid("metadata count"), base, (b) => b.writeBigUInt64LE(1n << 40n, 16)),
    patched("string length 2^50", invalid("general.name"), base, (b) => b.writeBigUInt64LE(1n << 50n, valueAt(b, "general.name"))),
    written("alignment 3", invalid("alignment"), setKey(base, "general.alignment", kv.u32(3))),
    written("alignment as u8", invalid("alignment"), setKey(base, "general.alignment", { type: GgufValueType.UINT8, value: 32 })),
    patched("value type 13", invalid("general.description"), base, (b) => b.writeUInt32LE(13, keyEnd(b, "general.description"))),
  );

  // Truncations, from inside the magic to the last byte of tensor data.
  const tensors = [...readGgufHeader(baseFile).tensors.values()];
  const dataStart = Math.min(...tensors.map((t) => t.fileOffset));
  const dataEnd = Math.max(...tensors.map((t) => t.fileOffset + t.byteSize));
  v.push(
    truncated("truncated to 0 bytes", { code: "INVALID_INPUT", names: /not a GGUF file/ }, () => 0),
    truncated("truncated to 3 bytes", { code: "INVALID_INPUT", names: /not a GGUF file/ }, () => 3),
    truncated("truncated to 6 bytes", invalid("truncated"), () => 6),
    truncated("truncated to 20 bytes", invalid("truncated"), () => 20),
    truncated("truncated in the metadata", invalid("truncated"), () => 300),
    truncated("truncated in the tensor infos", invalid("truncated"), () => dataStart - 60),
    truncated("truncated before the data", invalid("truncated"), () => dataStart),
    truncated("truncated in mm.0.weight", invalid("mm.0.weight"), () => dataStart + 5000),
    truncated("truncated halfway", invalid("truncated"), (b) => Math.floor(b.length / 2)),
    truncated("truncated by the last data byte", invalid("truncated"), () => dataEnd - 1),
  );

  // Items of projector and encoder weights that are NaN or infinite load, and encode to NON_FINITE.
  v.push(
    written("mm.2.bias NaN", { code: "NON_FINITE", names: /projector/ }, changeTensor(base, "mm.2.bias", { source: { kind: "const", value: Number.NaN } })),
    written("mm.0.weight Inf", { code: "NON_FINITE" }, changeTensor(base, "mm.0.weight", { source: { kind: "const", value: Number.POSITIVE_INFINITY } })),
    written("encoder ln2 NaN", { code: "NON_FINITE" }, changeTensor(base, "v.blk.1.ln2.weight", { source: { kind: "const", value: Number.NaN } })),
  );

  // Documented successes: well-formed variations a real mmproj may have.
  v.push(
    written("explicit feature_layer [2]", { ok: "an explicit feature layer inside the tower: the graph runs 2 layers and capture follows" },
      setKey(base, "clip.vision.feature_layer", kv.arr(GgufValueType.INT32, [2]))),
    written("no feature_layer key", { ok: "LLaVA's default: block_count - 1 layers run" }, setKey(base, "clip.vision.feature_layer", undefined)),
    written("head_dim 32", { ok: "clip.vision.attention.head_dim that agrees with embedding_length / head_count" },
      setKey(base, "clip.vision.attention.head_dim", kv.u32(32))),
    written("q8_0 attention weights", { ok: "quantized matrices are read by ggml_mul_mat" },
      { ...base, tensors: base.tensors.map((t) => (/attn_[qkv]\.weight$/.test(t.name) ? { ...t, type: GgmlType.Q8_0 } : t)) }),
    written("legacy ffn naming", { ok: "old converters swapped ffn_up and ffn_down; clip.cpp swaps them back" },
      { ...base, tensors: base.tensors.map((t) => {
        const m = /^(v\.blk\.\d+)\.ffn_(up|down)\.(weight|bias)$/.exec(t.name);
        return m ? { ...t, name: `${m[1]}.ffn_${m[2] === "up" ? "down" : "up"}.${m[3]}` } : t;
      }) }),
    written("post-layernorm", { ok: "a tower with v.post_ln (weight and bias), which the llava graph applies" },
      addTensor(addTensor(base, "v.post_ln.weight", [128], GgmlType.F32, 1), "v.post_ln.bias", [128], GgmlType.F32, 0)),
    written("image_newline alone", { ok: "LLaVA-1.6's v.image_newline without pinpoints: loaded, unused by a single tile" },
      addTensor(base, "v.image_newline", [256])),
    written("LLaVA-1.6 pinpoints", { ok: "the 448x336 probe image becomes the overview plus a 1x2 grid (the 672x336 candidate)", tiles: 3 },
      addTensor(setKey(setKey(base, "clip.vision.image_grid_pinpoints", kv.arr(GgufValueType.INT32, [336, 672, 672, 336, 672, 672])),
        "clip.vision.mm_patch_merge_type", kv.str("spatial_unpad")), "v.image_newline", [256])),
  );

  // Random bytes of the header flipped: whatever they hit, a typed error or a file that works.
  const random = prng(14);
  for (let i = 0; i < 24; i++) {
    const flips = Array.from({ length: 1 + (i % 3) }, () => [random(), 1 + Math.floor(random() * 255)] as const);
    v.push(patched(`header bytes flipped #${i}`, { typedOrOk: "fuzz" }, base, (b) => {
      for (const [where, mask] of flips) {
        const at = Math.floor(where * dataStart);
        b[at] ^= mask;
      }
    }));
  }
  return v;
}

// ---- running the variants in child processes ---------------------------------------------------

interface Outcome {
  id: string;
  result: "ok" | "error" | "untyped" | "crash" | "hang";
  code?: string;
  message?: string;
  tokens?: number;
  stockTokens?: number;
}

/** A variant still running after this long counts as a hang: the child is killed and the next one goes on. */
const HANG_MS = 60_000;

/** Runs `job` in one child after another until every mmproj has an outcome; a crash or a hang costs a restart. */
async function probe(job: ProbeJob, dir: string): Promise<Outcome[]> {
  const outcomes = new Map<string, Outcome>();
  for (let run = 0; outcomes.size < job.mmprojs.length; run++) {
    const rest = job.mmprojs.filter((m) => !outcomes.has(m.id));
    const jobFile = path.join(dir, `job-${run}.json`);
    const resultsFile = path.join(dir, `results-${run}.jsonl`);
    writeFileSync(jobFile, JSON.stringify({ ...job, mmprojs: rest }));
    const exit = await new Promise<{ code: number | null; signal: string | null; stderr: string; hung: boolean }>((resolve) => {
      const child = spawn(process.execPath, ["--import", path.join(supportDir, "ts-loader.mjs"), path.join(supportDir, "mmproj-probe.ts"), jobFile, resultsFile], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      let hung = false;
      let progress = { size: -1, at: Date.now() };
      const watchdog = setInterval(() => {
        const size = existsSync(resultsFile) ? statSync(resultsFile).size : 0;
        if (size !== progress.size) progress = { size, at: Date.now() };
        else if (size > 0 && Date.now() - progress.at > HANG_MS) {
          hung = true;
          child.kill("SIGKILL");
        }
      }, 1000);
      child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
      child.on("close", (code, signal) => {
        clearInterval(watchdog);
        resolve({ code, signal, stderr, hung });
      });
    });
    const lines = existsSync(resultsFile) ? readFileSync(resultsFile, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as ProbeResult) : [];
    let current: string | undefined;
    for (const line of lines) {
      if (line.phase === "start") current = line.id;
      else {
        const { phase: _, ...outcome } = line;
        outcomes.set(line.id, outcome);
        current = undefined;
      }
    }
    if (current !== undefined) {
      const why = `${exit.signal ?? `exit code ${exit.code}`}: ${exit.stderr.trim().split("\n").slice(-3).join(" | ")}`;
      outcomes.set(current, { id: current, result: exit.hung ? "hang" : "crash", message: exit.hung ? `no outcome after ${HANG_MS / 1000} s` : why });
    } else if (outcomes.size < job.mmprojs.length) {
      throw new Error(`the probe stopped before its first mmproj (${exit.signal ?? exit.code}): ${exit.stderr}`);
    }
  }
  return job.mmprojs.map((m) => outcomes.get(m.id)!);
}

let dir: string;
let baseFile: string;
let variants: Variant[];
let outcomes: Outcome[];

beforeAll(async () => {
  const pair = await ensureLlavaGguf("tiny");
  dir = mkdtempSync(path.join(os.tmpdir(), "lv-mmproj-corpus-"));
  baseFile = path.join(dir, "base.gguf");
  await writeGguf(baseFile, base);
  // LEANVISION_CORPUS_ONLY=<regexp> runs only the variants whose id matches (to look at a few).
  const only = process.env.LEANVISION_CORPUS_ONLY;
  variants = corpus().filter((v) => only === undefined || new RegExp(only).test(v.id));
  const mmprojs = [];
  for (const [i, variant] of variants.entries()) {
    const file = path.join(dir, `${String(i).padStart(3, "0")}.gguf`);
    await variant.write(file);
    mmprojs.push({ id: variant.id, path: file });
  }
  outcomes = await probe({ modelPath: pair.modelPath, mmprojs }, dir);
}, 600_000);

afterAll(() => {
  // LEANVISION_KEEP_CORPUS=1 keeps the variants and the probes' results for a look.
  if (dir && process.env.LEANVISION_KEEP_CORPUS === "1") console.log(`mmproj corpus kept in ${dir}`);
  else if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("corrupted mmproj corpus (tiny profile), each loaded and encoded in a child process", () => {
  it("the generated base file is the tiny profile's mmproj", async () => {
    const cached = readFileSync((await ensureLlavaGguf("tiny")).mmprojPath);
    expect(readFileSync(baseFile).equals(cached)).toBe(true);
    expect(new Set(variants.map((v) => v.id)).size).toBe(variants.length);
  });

  it("nothing crashes or hangs the process, and every failure is a typed LeanVisionError", () => {
    const counts = { variants: outcomes.length, typedErrors: 0, successes: 0, crashes: 0, hangs: 0, untyped: 0 };
    for (const o of outcomes) {
      if (o.result === "error") counts.typedErrors++;
      else if (o.result === "ok") counts.successes++;
      else if (o.result === "crash") counts.crashes++;
      else if (o.result === "hang") counts.hangs++;
      else counts.untyped++;
    }
    console.log(`mmproj corpus: ${JSON.stringify(counts)}`);
    expect(outcomes.filter((o) => o.result === "crash" || o.result === "hang")).toEqual([]);
    expect(outcomes.filter((o) => o.result === "untyped")).toEqual([]);
  });

  it("each variant ends as expected: its error code naming the key or tensor at fault, or a documented success", () => {
    const mismatches: string[] = [];
    variants.forEach((variant, i) => {
      const o = outcomes[i];
      const e = variant.expect;
      const got = o.result === "error" ? `${o.code}: ${o.message}` : o.result === "ok" ? `ok (${o.tokens} tokens, stock ${o.stockTokens})` : `${o.result}: ${o.message}`;
      if ("ok" in e) {
        const tiles = e.tiles ?? 1;
        if (o.result !== "ok" || o.tokens !== 64 * tiles || o.stockTokens !== 576 * tiles) mismatches.push(`${variant.id}: expected success (${e.ok}), got ${got}`);
      } else if ("code" in e) {
        if (o.result !== "error" || o.code !== e.code || (e.names && !e.names.test(o.message!))) {
          mismatches.push(`${variant.id}: expected ${e.code}${e.names ? ` naming ${e.names}` : ""}, got ${got}`);
        }
      } else if (o.result !== "ok" && o.result !== "error") {
        mismatches.push(`${variant.id}: expected a typed error or a success, got ${got}`);
      }
    });
    expect(mismatches).toEqual([]);
  });

  it("the issue's cases are in the corpus", () => {
    const ids = new Set(variants.map((v) => v.id));
    for (const id of ["missing v.position_embd.weight", "missing v.blk.1.attn_q.weight", "missing v.blk.2.attn_k.weight", "clip.vision.image_size=3360",
      "clip.vision.patch_size=1", "clip.vision.patch_size=7", "clip.vision.patch_size=13", "layer_norm_epsilon NaN", "layer_norm_epsilon=-1",
      "patch_embd 7x28x3x128", "attn_q 64x256", "missing v.pre_ln.weight", "missing v.blk.0.ln1.weight", "missing v.class_embd",
      "missing v.blk.2.ffn_down.bias", "clip.vision.patch_size=28", "clip.vision.image_size=337", "clip.vision.attention.head_count=1",
      "clip.vision.attention.head_count=128", "feature_layer=[-5]", "feature_layer=[]"]) {
      expect(ids.has(id), id).toBe(true);
    }
  });
});
