import * as tf from '@tensorflow/tfjs-core';

/**
 * a [N, K] · b [K, M] → [N, M], gradients included, using only plain (untransposed, unbatched)
 * matMuls: on wasm those run through XNNPACK (~29 GFLOP/s here), while tfjs' transposed or
 * batched matMuls, which its own matMul gradient uses, fall to a path ~10× slower.
 */
export const matMul2d = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor, [sa, sb]: tf.Tensor[]) => [
      tf.matMul(dy as tf.Tensor2D, tf.transpose(sb) as tf.Tensor2D), // dA = dy · bᵀ
      tf.matMul(tf.transpose(sa) as tf.Tensor2D, dy as tf.Tensor2D), // dB = aᵀ · dy
    ],
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/**
 * Below this many multiply-adds per product, kernel dispatch costs more than the slow batched
 * path: tfjs' own batched matMul is used instead of G separate products.
 */
const UNROLL_MIN_MACS = 1 << 16;

/** x [G, N, M] → G slices [N, M] (on wasm, @png/core's Unpack copies only each slice). */
function slices(x: tf.Tensor): tf.Tensor2D[] {
  return tf.unstack(x) as tf.Tensor2D[];
}

/** a [G, N, K] · b [G, K, M] as G plain 2-D products in both passes (see matMul2d). */
const unrolledBatchMatMul = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: tf.tidy(() => {
      const bs = slices(b);
      return tf.stack(slices(a).map((ai, g) => tf.matMul(ai, bs[g]))); // [G, N, M]
    }),
    gradFunc: (dy: tf.Tensor, [sa, sb]: tf.Tensor[]) =>
      tf.tidy(() => {
        const [as, bs, dys] = [slices(sa), slices(sb), slices(dy)];
        return [
          tf.stack(dys.map((d, g) => tf.matMul(d, tf.transpose(bs[g]) as tf.Tensor2D))), // dA_g = dy_g · b_gᵀ
          tf.stack(as.map((ai, g) => tf.matMul(tf.transpose(ai) as tf.Tensor2D, dys[g]))), // dB_g = a_gᵀ · dy_g
        ];
      }),
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D;

/**
 * a [G, N, K] · b [G, K, M] → [G, N, M]. Large products run as G plain 2-D products (see
 * matMul2d); small ones as one tfjs batched matMul, whose dispatch overhead is lower.
 */
export function batchMatMul(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  if (a.shape[0] !== b.shape[0] || a.shape[2] !== b.shape[1]) throw new Error(`batchMatMul: [${a.shape}] · [${b.shape}] do not fit`);
  if (a.shape[1] * a.shape[2] * b.shape[2] < UNROLL_MIN_MACS) return tf.matMul(a, b);
  if (a.shape[0] === 1) return tf.expandDims(matMul2d(tf.squeeze(a, [0]) as tf.Tensor2D, tf.squeeze(b, [0]) as tf.Tensor2D), 0) as tf.Tensor3D;
  return unrolledBatchMatMul(a, b);
}
