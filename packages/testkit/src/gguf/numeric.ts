// Number formats and random weights for the GGUF writer: a seeded PRNG, float32 -> float16, and the
// ggml q8_0 / q4_0 block encodings (same layout and rounding as ggml's reference quantizers).

/** ggml tensor types the writer supports (values are ggml's `enum ggml_type`). */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
}

/** Values per block and bytes per block of each type. */
export const GGML_BLOCK: Record<GgmlType, { values: number; bytes: number }> = {
  [GgmlType.F32]: { values: 1, bytes: 4 },
  [GgmlType.F16]: { values: 1, bytes: 2 },
  [GgmlType.Q4_0]: { values: 32, bytes: 18 },
  [GgmlType.Q8_0]: { values: 32, bytes: 34 },
};

/** Bytes a tensor of `count` values takes in `type` (count must be a whole number of blocks). */
export function ggmlByteSize(type: GgmlType, count: number): number {
  const block = GGML_BLOCK[type];
  return (count / block.values) * block.bytes;
}

/** FNV-1a over a string, used to give every tensor its own seed (so tensors are order-independent). */
export function hashSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** mulberry32: tiny, fast, good enough for random weights; deterministic from its seed. */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  nextU32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /**
   * Fills `out` with zero-mean values of standard deviation `std`. Each value is the sum of two
   * 16-bit uniforms from one draw (a triangular, bell-like shape): cheap enough for billions of weights.
   */
  fillBell(out: Float32Array, std: number): void {
    const scale = bellScale(std);
    for (let i = 0; i < out.length; i++) {
      const r = this.nextU32();
      out[i] = ((r & 0xffff) + (r >>> 16) - 65535) * scale;
    }
  }
  /**
   * The same values as fillBell, written as float16 bits. The sum of two 16-bit uniforms takes only
   * 131071 values, so their float16 codes come from a table instead of a conversion per weight.
   */
  fillBellF16(out: Uint16Array, std: number): void {
    const scale = bellScale(std);
    const table = new Uint16Array(131071);
    for (let s = 0; s < table.length; s++) table[s] = f32ToF16((s - 65535) * scale);
    for (let i = 0; i < out.length; i++) {
      const r = this.nextU32();
      out[i] = table[(r & 0xffff) + (r >>> 16)];
    }
  }
}

function bellScale(std: number): number {
  // The sum of two uniforms on [0, 1) has variance 1/6.
  return (std * Math.sqrt(6)) / 65536;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE float32 -> float16 bits, round to nearest even, with subnormals, infinities and NaN. */
export function f32ToF16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let h = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++; // may carry into the exponent, which is correct
  return sign | h;
}

/** float16 bits -> number. */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Encodes `values` as `type` into `out` (which must be ggmlByteSize(type, values.length) long). */
export function encodeValues(type: GgmlType, values: Float32Array, out: Uint8Array): void {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  switch (type) {
    case GgmlType.F32:
      for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
      return;
    case GgmlType.F16:
      for (let i = 0; i < values.length; i++) view.setUint16(i * 2, f32ToF16(values[i]), true);
      return;
    case GgmlType.Q8_0:
      return encodeQ8_0(values, out, view);
    case GgmlType.Q4_0:
      return encodeQ4_0(values, out, view);
  }
}

// ggml quantize_row_q8_0_ref: d = amax / 127, q = round(x / d).
function encodeQ8_0(values: Float32Array, out: Uint8Array, view: DataView): void {
  for (let b = 0; b * 32 < values.length; b++) {
    const base = b * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[base + j]));
    const d = amax / 127;
    const id = d ? 1 / d : 0;
    view.setUint16(b * 34, f32ToF16(d), true);
    for (let j = 0; j < 32; j++) view.setInt8(b * 34 + 2 + j, roundHalfAway(values[base + j] * id));
  }
}

// ggml quantize_row_q4_0_ref: d = max / -8 (max = the value of largest magnitude, with its sign),
// q = min(15, trunc(x / d + 8.5)); element j goes in the low nibble of byte j, element j+16 in the high.
function encodeQ4_0(values: Float32Array, out: Uint8Array, view: DataView): void {
  for (let b = 0; b * 32 < values.length; b++) {
    const base = b * 32;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = values[base + j];
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = max / -8;
    const id = d ? 1 / d : 0;
    view.setUint16(b * 18, f32ToF16(d), true);
    for (let j = 0; j < 16; j++) {
      const lo = Math.min(15, Math.trunc(values[base + j] * id + 8.5));
      const hi = Math.min(15, Math.trunc(values[base + j + 16] * id + 8.5));
      out[b * 18 + 2 + j] = lo | (hi << 4);
    }
  }
}

function roundHalfAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/** Decodes `count` values of `type` from `bytes` (the inverse of encodeValues, up to quantization). */
export function decodeValues(type: GgmlType, bytes: Uint8Array, count: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    switch (type) {
      case GgmlType.F32:
        out[i] = view.getFloat32(i * 4, true);
        break;
      case GgmlType.F16:
        out[i] = f16ToF32(view.getUint16(i * 2, true));
        break;
      case GgmlType.Q8_0: {
        const b = Math.floor(i / 32);
        out[i] = f16ToF32(view.getUint16(b * 34, true)) * view.getInt8(b * 34 + 2 + (i % 32));
        break;
      }
      case GgmlType.Q4_0: {
        const b = Math.floor(i / 32);
        const j = i % 32;
        const byte = bytes[b * 18 + 2 + (j % 16)];
        const q = j < 16 ? byte & 0x0f : byte >>> 4;
        out[i] = f16ToF32(view.getUint16(b * 18, true)) * (q - 8);
        break;
      }
    }
  }
  return out;
}

/**
 * Writes `blocks` random quantized blocks straight into `out`, without going through float32:
 * uniform codes with one fixed scale chosen so the weights have standard deviation `std`. This is
 * what makes multi-GB profiles fast to write; the blocks are valid ggml blocks with a finite scale.
 */
export function fillRandomBlocks(type: GgmlType.Q8_0 | GgmlType.Q4_0, prng: Prng, std: number, out: Uint8Array, blocks: number): void {
  // Each block: an f16 scale d, then random code bytes (32 int8 codes for q8_0, 32 4-bit codes in
  // 16 bytes for q4_0). q8_0's codes are uniform on [-128, 127], standard deviation 73.9; q4_0's are
  // uniform on [0, 15] with value (q - 8) * d, standard deviation 4.61.
  const [blockBytes, codeBytes, codeStd] = type === GgmlType.Q8_0 ? [34, 32, 73.9] : [18, 16, 4.61];
  const d = f32ToF16(std / codeStd);
  for (let b = 0; b < blocks; b++) {
    const o = b * blockBytes;
    out[o] = d & 0xff;
    out[o + 1] = d >>> 8;
    for (let j = 0; j < codeBytes; j += 4) {
      const r = prng.nextU32();
      out[o + 2 + j] = r & 0xff;
      out[o + 3 + j] = (r >>> 8) & 0xff;
      out[o + 4 + j] = (r >>> 16) & 0xff;
      out[o + 5 + j] = r >>> 24;
    }
  }
}
