// WebAssembly SIMD kernels for the reducers' hot loops (f32x4: four floats per instruction, where
// plain JavaScript does one). The kernels are written in kernels/simd-kernels.ts with a tiny typed
// builder (kernels/wasm.ts: named instructions, no build step, no dependency), assembled into a
// 1.3 KB module and instantiated on first use. Where WebAssembly SIMD is missing or blocked (an old
// engine, a Content-Security-Policy without 'wasm-unsafe-eval'), `simd()` returns null and the
// reducers use their plain loops. The kernels work on byte offsets into `memory`; every loop runs
// over n bytes, a multiple of 16.
import { simdModuleBytes } from "./kernels/simd-kernels.js";

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
      const bytes = simdModuleBytes();
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
