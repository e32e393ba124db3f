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

/** A frozen weight: not a trainable variable, so no gradient is ever asked of it. */
function isFrozen(w: tf.Tensor): boolean {
  return !(w instanceof tf.Variable && w.trainable);
}

/** A torch-layout weight [O, ...] (Linear's [O, K], a conv's [O, I, kh, kw]) as the matrix [O, K]. */
function asMatrix(w: tf.Tensor): tf.Tensor2D {
  return (w.rank === 2 ? w : tf.reshape(w, [w.shape[0], -1])) as tf.Tensor2D; // [O, K]
}

/**
 * Whether a product with the weight w [O, ...] (torch layout, K = its size / O) and an activation
 * of N rows runs faster with w streamed (see `streamedWeightProduct`): only on wasm, only for a
 * frozen w (pass the parameter itself, not a reshape of it). XNNPACK, the wasm backend's GEMM,
 * packs the right-hand operand of every product into its own layout, a pass over it per new
 * tensor. Multiplying as usual packs w after transposing it: about 2·K·O of memory traffic per
 * call. Streaming packs the activation instead and transposes it in and out: about N·(K + O).
 */
export function streamsWeight(w: tf.Tensor, rows: number): boolean {
  const [o, k] = [w.shape[0], w.size / w.shape[0]];
  return tf.getBackend() === 'wasm' && isFrozen(w) && rows * (k + o) < 2 * k * o;
}

/**
 * yᵀ [O, N] = w [O, K] · xᵀ [K, N] for a frozen weight in torch layout (w [O, ...] is read as
 * [O, K]): w is XNNPACK's left-hand operand, read once in place and never packed or copied; only
 * the activation xᵀ is packed. This is what makes SD's low-resolution blocks (16–64 tokens, 1,280+
 * channels) run at the GEMM's speed without a packed copy of each weight. The gradient reaches xᵀ
 * alone: dxᵀ = wᵀ·dyᵀ.
 */
export function streamedWeightProduct(w: tf.Tensor, xT: tf.Tensor2D): tf.Tensor2D {
  if (!isFrozen(w)) throw new Error(`streamedWeightProduct: the weight '${(w as tf.Variable).name}' is a trainable variable; its gradient would be lost`);
  if (w.size / w.shape[0] !== xT.shape[0]) throw new Error(`streamedWeightProduct: weight [${w.shape}] · activation [${xT.shape}] do not fit`);
  // The [O, K] views of w live only inside these tidies: nothing shares w's storage once the product
  // is made, so an offloaded w can be evicted right after its block ran.
  const product = tf.customGrad(((x: tf.Tensor) => ({
    value: tf.tidy(() => tf.matMul(asMatrix(w), x as tf.Tensor2D)), // [O, N]
    // wᵀ is a transient copy, streamed in turn: multiplying by w as the right-hand operand would
    // leave XNNPACK's packed copy of it cached for as long as w lives
    gradFunc: (dy: tf.Tensor) => tf.tidy(() => tf.matMul(tf.transpose(asMatrix(w)) as tf.Tensor2D, dy as tf.Tensor2D)), // [K, O] · [O, N] → [K, N]
  })) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor2D) => tf.Tensor2D;
  return product(xT);
}

/**
 * x [N, K] · wᵀ → [N, O] for a weight in torch layout w [O, ...] read as [O, K] (nn.Linear's, a
 * 1×1 conv's): streamed on wasm when that is cheaper (see `streamsWeight`), else w is transposed
 * and multiplied (on wasm through matMul2d, gradients to both), or on other backends multiplied
 * transposed directly.
 */
export function matMulTransposedWeight(x: tf.Tensor2D, w: tf.Tensor): tf.Tensor2D {
  if (x.shape[1] * w.shape[0] !== w.size) throw new Error(`matMulTransposedWeight: [${x.shape}] · [${w.shape}]ᵀ do not fit`);
  if (streamsWeight(w, x.shape[0])) return tf.transpose(streamedWeightProduct(w, tf.transpose(x) as tf.Tensor2D)); // [O, N] → [N, O]
  if (tf.getBackend() === 'wasm') return matMul2d(x, tf.tidy(() => tf.transpose(asMatrix(w)) as tf.Tensor2D)); // [K, O], a copy
  return tf.tidy(() => tf.matMul(x, asMatrix(w), false, true));
}
