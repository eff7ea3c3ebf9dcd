// Row sums with the SIMD kernels, shared by pooling (window means) and VisionZip (contextual means).
import type { SimdKernels } from "../simd.js";

/**
 * dst = the sum of the m >= 1 rows listed (hidden-state token indices; rows of n bytes from byte
 * 0 of the kernels' memory), in float32: the first four in one pass, then four more per pass.
 * `zero` is the byte offset of a zero row. With m === 4 the sum is multiplied by `scale4`.
 */
export function simdSumRows(k: SimdKernels, dst: number, rows: Int32Array, m: number, n: number, zero: number, scale4 = 1): void {
  let x = 0;
  if (m >= 4) {
    k.sum4(dst, rows[0] * n, rows[1] * n, rows[2] * n, rows[3] * n, n, m === 4 ? scale4 : 1);
    x = 4;
  } else {
    k.axpy(dst, rows[0] * n, zero, n, 0); // dst = first row
    x = 1;
  }
  for (; x + 4 <= m; x += 4) k.acc4(dst, rows[x] * n, rows[x + 1] * n, rows[x + 2] * n, rows[x + 3] * n, n);
  for (; x < m; x++) k.acc1(dst, rows[x] * n, n);
}
