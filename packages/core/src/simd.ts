// WebAssembly SIMD kernels for the reducers' hot loops (f32x4: four floats per instruction, where
// plain JavaScript does one). The module is assembled here from a few opcodes (1.3 KB, no
// build step, no dependency) and instantiated on first use. Where WebAssembly SIMD is missing or
// blocked (an old engine, a Content-Security-Policy without 'wasm-unsafe-eval'), `simd()` returns
// null and the reducers use their plain loops. The kernels work on byte offsets into `memory`;
// every loop runs over n bytes, a multiple of 16.

const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
const vec = (items: number[][]): number[] => [...leb(items.length), ...items.flat()];
const section = (id: number, bytes: number[]): number[] => [id, ...leb(bytes.length), ...bytes];
const name = (s: string): number[] => vec([...s].map((c) => [c.charCodeAt(0)]));
const op = (code: number): number[] => [0xfd, ...leb(code)];
const get = (i: number): number[] => [0x20, i];
const set = (i: number): number[] => [0x21, i];
const addr = (base: number, i: number): number[] => [...get(base), ...get(i), 0x6a];
const load = (base: number, i: number): number[] => [...addr(base, i), ...op(0), 0, 0]; // v128.load
const STORE = [...op(11), 0, 0]; // v128.store
const ADD = op(228); // f32x4.add
const MUL = op(230); // f32x4.mul
const SPLAT = op(19); // f32x4.splat
const lane = (l: number): number[] => [...op(31), l]; // f32x4.extract_lane
/** for (i = 0; i < n; i += 16) body */
const loop = (i: number, n: number, body: number[]): number[] => [
  0x02, 0x40, 0x03, 0x40, ...get(i), ...get(n), 0x4f, 0x0d, 1, ...body, ...get(i), 0x41, 16, 0x6a, ...set(i), 0x0c, 0, 0x0b, 0x0b
];
/** Sum of the four lanes of local v: (l0 + l1) + (l2 + l3). */
const hsum = (v: number): number[] => [...get(v), ...lane(0), ...get(v), ...lane(1), 0x92, ...get(v), ...lane(2), ...get(v), ...lane(3), 0x92, 0x92];
const splatTo = (from: number, to: number): number[] => [...get(from), ...SPLAT, ...set(to)];

interface Kernel {
  params: number[];
  results?: number[];
  locals: number[][];
  body: number[];
}

const KERNELS: Record<string, Kernel> = {
  // sum4(dst, a, b, c, e, n, scale): dst = ((a + b) + (c + e)) * scale
  sum4: (() => {
    const [dst, a, b, c, e, n, scale, i, s] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    return {
      params: [I32, I32, I32, I32, I32, I32, F32],
      locals: [[1, I32], [1, V128]],
      body: [...splatTo(scale, s), ...loop(i, n, [...addr(dst, i), ...load(a, i), ...load(b, i), ...ADD, ...load(c, i), ...load(e, i), ...ADD, ...ADD, ...get(s), ...MUL, ...STORE])]
    };
  })(),
  // acc4(acc, a, b, c, e, n): acc += (a + b) + (c + e)
  acc4: (() => {
    const [acc, a, b, c, e, n, i] = [0, 1, 2, 3, 4, 5, 6];
    return {
      params: [I32, I32, I32, I32, I32, I32],
      locals: [[1, I32]],
      body: loop(i, n, [...addr(acc, i), ...load(acc, i), ...load(a, i), ...load(b, i), ...ADD, ...load(c, i), ...load(e, i), ...ADD, ...ADD, ...ADD, ...STORE])
    };
  })(),
  // acc1(acc, a, n): acc += a
  acc1: (() => {
    const [acc, a, n, i] = [0, 1, 2, 3];
    return { params: [I32, I32, I32], locals: [[1, I32]], body: loop(i, n, [...addr(acc, i), ...load(acc, i), ...load(a, i), ...ADD, ...STORE]) };
  })(),
  // axpy(dst, t, acc, n, s): dst = t + acc * s
  axpy: (() => {
    const [dst, t, acc, n, s, i, vs] = [0, 1, 2, 3, 4, 5, 6];
    return {
      params: [I32, I32, I32, I32, F32],
      locals: [[1, I32], [1, V128]],
      body: [...splatTo(s, vs), ...loop(i, n, [...addr(dst, i), ...load(t, i), ...load(acc, i), ...get(vs), ...MUL, ...ADD, ...STORE])]
    };
  })(),
  // logits4(a, b, c, e, n, wa, wb, wc, we, res): q = wa a + wb b + wc c + we e, then the four
  // dot products q . a, q . b, q . c, q . e as float32 at res, res + 4, res + 8, res + 12.
  logits4: (() => {
    const [a, b, c, e, n, wa, wb, wc, we, res, i, va, vb, vc, ve, q, s0, s1, s2, s3, ra, rb, rc, re] = [...Array(24).keys()];
    const fma = (s: number, r: number) => [...get(s), ...get(q), ...get(r), ...MUL, ...ADD, ...set(s)];
    const weighted = [...get(va), ...get(ra), ...MUL, ...get(vb), ...get(rb), ...MUL, ...ADD, ...get(vc), ...get(rc), ...MUL, ...ADD, ...get(ve), ...get(re), ...MUL, ...ADD];
    return {
      params: [I32, I32, I32, I32, I32, F32, F32, F32, F32, I32],
      locals: [[1, I32], [13, V128]],
      body: [
        ...splatTo(wa, va), ...splatTo(wb, vb), ...splatTo(wc, vc), ...splatTo(we, ve),
        ...loop(i, n, [
          ...load(a, i), ...set(ra), ...load(b, i), ...set(rb), ...load(c, i), ...set(rc), ...load(e, i), ...set(re),
          ...weighted, ...set(q), ...fma(s0, ra), ...fma(s1, rb), ...fma(s2, rc), ...fma(s3, re)
        ]),
        ...[s0, s1, s2, s3].flatMap((s, k) => [...get(res), ...hsum(s), 0x38, 2, 4 * k]) // f32.store
      ]
    };
  })(),
  // dots(key, units, count, n, res): res[j] = key . units[j] (float32) for the count rows of units
  // (n bytes each, back to back) at res + 4 j.
  dots: (() => {
    const [key, units, count, n, res, i, j, u, r, s] = [...Array(10).keys()];
    const F32_ZERO = [0x43, 0, 0, 0, 0];
    return {
      params: [I32, I32, I32, I32, I32],
      locals: [[4, I32], [1, V128]],
      body: [
        ...get(units), ...set(u), ...get(res), ...set(r), 0x41, 0, ...set(j),
        0x02, 0x40, 0x03, 0x40, ...get(j), ...get(count), 0x4f, 0x0d, 1,
        ...F32_ZERO, ...SPLAT, ...set(s), 0x41, 0, ...set(i),
        ...loop(i, n, [...get(s), ...load(key, i), ...load(u, i), ...MUL, ...ADD, ...set(s)]),
        ...get(r), ...hsum(s), 0x38, 2, 0,
        ...get(u), ...get(n), 0x6a, ...set(u), ...get(r), 0x41, 4, 0x6a, ...set(r), ...get(j), 0x41, 1, 0x6a, ...set(j),
        0x0c, 0, 0x0b, 0x0b
      ]
    };
  })(),
  // norms(rows, count, n, res): res[j] = rows[j] . rows[j] (float32) for count rows of n bytes.
  norms: (() => {
    const [rows, count, n, res, i, j, u, r, s] = [...Array(9).keys()];
    return {
      params: [I32, I32, I32, I32],
      locals: [[4, I32], [1, V128]],
      body: [
        ...get(rows), ...set(u), ...get(res), ...set(r), 0x41, 0, ...set(j),
        0x02, 0x40, 0x03, 0x40, ...get(j), ...get(count), 0x4f, 0x0d, 1,
        0x43, 0, 0, 0, 0, ...SPLAT, ...set(s), 0x41, 0, ...set(i),
        ...loop(i, n, [...get(s), ...load(u, i), ...load(u, i), ...MUL, ...ADD, ...set(s)]),
        ...get(r), ...hsum(s), 0x38, 2, 0,
        ...get(u), ...get(n), 0x6a, ...set(u), ...get(r), 0x41, 4, 0x6a, ...set(r), ...get(j), 0x41, 1, 0x6a, ...set(j),
        0x0c, 0, 0x0b, 0x0b
      ]
    };
  })(),
  // finite(ptr, n) -> 1 when the n bytes at ptr hold no NaN or ±Infinity, else 0: x * 0 is 0 for
  // finite x and NaN otherwise, so the running sum stays equal to itself exactly when all are.
  finite: (() => {
    const [ptr, n, i, acc, zero] = [0, 1, 2, 3, 4];
    return {
      params: [I32, I32],
      results: [I32],
      locals: [[1, I32], [2, V128]],
      body: [
        0x43, 0, 0, 0, 0, ...SPLAT, ...set(zero), ...get(zero), ...set(acc),
        ...loop(i, n, [...get(acc), ...load(ptr, i), ...get(zero), ...MUL, ...ADD, ...set(acc)]),
        ...get(acc), ...get(acc), ...op(65), ...op(163) // f32x4.eq, i32x4.all_true
      ]
    };
  })(),
  // wsum4(dst, a, b, c, e, n, wa, wb, wc, we): dst = wa a + wb b + wc c + we e
  wsum4: (() => {
    const [dst, a, b, c, e, n, wa, wb, wc, we, i, va, vb, vc, ve] = [...Array(15).keys()];
    return {
      params: [I32, I32, I32, I32, I32, I32, F32, F32, F32, F32],
      locals: [[1, I32], [4, V128]],
      body: [
        ...splatTo(wa, va), ...splatTo(wb, vb), ...splatTo(wc, vc), ...splatTo(we, ve),
        ...loop(i, n, [
          ...addr(dst, i), ...get(va), ...load(a, i), ...MUL, ...get(vb), ...load(b, i), ...MUL, ...ADD,
          ...get(vc), ...load(c, i), ...MUL, ...ADD, ...get(ve), ...load(e, i), ...MUL, ...ADD, ...STORE
        ])
      ]
    };
  })()
};

function moduleBytes(): Uint8Array {
  const names = Object.keys(KERNELS);
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, vec(names.map((k) => [0x60, ...vec(KERNELS[k].params.map((p) => [p])), ...vec((KERNELS[k].results ?? []).map((r) => [r]))]))),
    ...section(3, vec(names.map((_, i) => [i]))),
    ...section(5, vec([[0x00, 1]])),
    ...section(7, vec([...names.map((k, i) => [...name(k), 0x00, i]), [...name("memory"), 0x02, 0]])),
    ...section(10, vec(names.map((k) => {
      const body = [...vec(KERNELS[k].locals), ...KERNELS[k].body, 0x0b];
      return [...leb(body.length), ...body];
    })))
  ]);
}

/** The parts of the WebAssembly API used here (core's lib settings carry no WebAssembly types). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
}

export interface SimdKernels {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  sum4(dst: number, a: number, b: number, c: number, e: number, n: number, scale: number): void;
  acc4(acc: number, a: number, b: number, c: number, e: number, n: number): void;
  acc1(acc: number, a: number, n: number): void;
  axpy(dst: number, t: number, acc: number, n: number, s: number): void;
  logits4(a: number, b: number, c: number, e: number, n: number, wa: number, wb: number, wc: number, we: number, res: number): void;
  dots(key: number, units: number, count: number, n: number, res: number): void;
  norms(rows: number, count: number, n: number, res: number): void;
  finite(ptr: number, n: number): number;
  wsum4(dst: number, a: number, b: number, c: number, e: number, n: number, wa: number, wb: number, wc: number, we: number): void;
}

let kernels: SimdKernels | null | undefined;
let enabled = true;

/** The SIMD kernels, or null where WebAssembly SIMD cannot run here (or is switched off). */
export function simd(): SimdKernels | null {
  if (!enabled) return null;
  if (kernels === undefined) {
    try {
      const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
      const bytes = moduleBytes();
      kernels = wasm && wasm.validate(bytes) ? (new wasm.Instance(new wasm.Module(bytes)).exports as unknown as SimdKernels) : null;
    } catch {
      kernels = null; // e.g. a Content-Security-Policy that forbids compiling WebAssembly
    }
  }
  return kernels;
}

/** Switches the SIMD kernels off (false) or back on, so tests can run the plain loops too. */
export function setSimdEnabled(on: boolean): void {
  enabled = on;
}

/**
 * Copies `hidden` to the start of the kernels' memory and makes room for `extraFloats` more
 * float32 values after it, plus a zero row of `dim` floats and 16 bytes of results. Returns the
 * memory as floats and the float offsets of the extra space, the zero row and the results.
 */
export function stage(k: SimdKernels, hidden: Float32Array, extraFloats: number, dim: number) {
  const extra = hidden.length;
  const zero = extra + extraFloats;
  const res = zero + dim;
  const bytes = (res + 4) * 4;
  const have = k.memory.buffer.byteLength;
  if (bytes > have) k.memory.grow(Math.ceil((bytes - have) / 65536));
  const mem = new Float32Array(k.memory.buffer, 0, res + 4);
  mem.set(hidden, 0);
  mem.fill(0, zero, res);
  return { mem, extra, zero, res };
}
