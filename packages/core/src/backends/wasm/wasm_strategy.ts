import * as tf from '@tensorflow/tfjs-core';
import { matMul2d } from '../matmul';
import { asMatrix, convOutputSize, hwio, pointwiseConv2d, portableStrategy, type BackendStrategy, type Conv2dArgs } from '../backend_strategy';
import { heapTensorFilledBy } from './wasm_heap';

/** A frozen weight: not a trainable variable, so no gradient is ever asked of it. */
function isFrozen(w: tf.Tensor): boolean {
  return !(w instanceof tf.Variable && w.trainable);
}

/**
 * Whether a product with the frozen weight w [O, ...] (torch layout, K = its size / O) and an
 * activation of N rows runs faster with w streamed (see `streamedWeightProduct`). XNNPACK, the
 * wasm backend's GEMM, packs the right-hand operand of every product into its own layout, a pass
 * over it per new tensor. Multiplying as usual packs w after transposing it: about 2·K·O of memory
 * traffic per call. Streaming packs the activation instead and transposes it in and out: about
 * N·(K + O).
 */
export function streamsWeight(w: tf.Tensor, rows: number): boolean {
  const [o, k] = [w.shape[0], w.size / w.shape[0]];
  return isFrozen(w) && rows * (k + o) < 2 * k * o;
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
 * colsᵀ [I·kh·kw, B·Ho·Wo]: row (i, kh, kw) is input channel i seen through tap (kh, kw) at every
 * output pixel, in the order of the flattened torch weight. With stride s the padded input is
 * first split into its s×s phases (padded[s·y + a, s·x + c] is phase (a, c) at (y, x)), so that
 * every tap is a slice with contiguous rows (wasm slices fast only so).
 */
function im2colT(x: tf.Tensor4D, conv: Conv2dArgs, Ho: number, Wo: number): tf.Tensor2D {
  const [B, H, W, I] = x.shape;
  const [[t, b], [l, r]] = conv.padding;
  const [k, s] = [conv.weight.shape[2], conv.stride];
  // tap kh of output row y reads padded row kh + s·y = s·(y + ⌊kh/s⌋) + kh mod s
  const Hq = Math.max(Math.ceil((H + t + b) / s), Math.floor((k - 1) / s) + Ho);
  const Wq = Math.max(Math.ceil((W + l + r) / s), Math.floor((k - 1) / s) + Wo);
  const xc = tf.reshape(tf.transpose(x, [3, 0, 1, 2]), [I * B, H, W]); // [I, B, H, W] → [I·B, H, W]
  let phases = tf.pad(xc, [
    [0, 0],
    [t, Hq * s - H - t],
    [l, Wq * s - W - l],
  ]); // [I·B, Hq·s, Wq·s]
  if (s > 1) {
    const split = tf.reshape(phases, [I * B, Hq, s, Wq, s]); // [I·B, Hq, s, Wq, s]
    phases = tf.reshape(tf.transpose(split, [2, 4, 0, 1, 3]), [s * s * I * B, Hq, Wq]); // [s, s, I·B, Hq, Wq] → [s·s·I·B, Hq, Wq]
  }
  const taps: tf.Tensor[] = [];
  for (let kh = 0; kh < k; kh++) {
    for (let kw = 0; kw < k; kw++) {
      const phase = (kh % s) * s + (kw % s);
      const tap = tf.slice(phases, [phase * I * B, Math.floor(kh / s), Math.floor(kw / s)], [I * B, Ho, Wo]); // [I·B, Ho, Wo]
      taps.push(tf.reshape(tap, [I, B * Ho * Wo]));
    }
  }
  return tf.reshape(tf.stack(taps, 1), [I * k * k, B * Ho * Wo]) as tf.Tensor2D; // [I, kh·kw, B·Ho·Wo] → [I·kh·kw, B·Ho·Wo]
}

/**
 * The wasm backend (XNNPACK). Weights are loaded straight into the wasm heap. A frozen weight that
 * outweighs its activation (few pixels, many channels: see `streamsWeight`) is streamed, never
 * packed or copied; a convolution then runs as im2col and a streamed product,
 * yᵀ = W[O, I·kh·kw] · colsᵀ (SD's 16×16 to 4×4 latents, 640–1,280 channels). Other products
 * transpose the weight per call and run as plain matMuls (`matMul2d`; tfjs' transposed ones are
 * ~10× slower here). No conv weight keeps a second layout from load time: SD v1.5 would not fit
 * wasm32's 4 GiB heap, and offloaded weights must leave it whole.
 */
export const wasmStrategy: BackendStrategy = {
  linear(x, weight) {
    if (streamsWeight(weight, x.shape[0])) return tf.transpose(streamedWeightProduct(weight, tf.transpose(x) as tf.Tensor2D)); // [O, N] → [N, O]
    return matMul2d(
      x,
      tf.tidy(() => tf.transpose(asMatrix(weight)) as tf.Tensor2D),
    ); // [N, K] · [K, O], the transpose a copy
  },
  conv2d(x, conv) {
    const pointwise = pointwiseConv2d(this, x, conv);
    if (pointwise) return pointwise;
    const [B] = x.shape;
    const [Ho, Wo] = convOutputSize(x, conv);
    const O = conv.weight.shape[0];
    if (streamsWeight(conv.weight, B * Ho * Wo)) {
      const yT = streamedWeightProduct(conv.weight, im2colT(x, conv, Ho, Wo)); // [O, I·kh·kw] · [I·kh·kw, B·Ho·Wo] → [O, B·Ho·Wo]
      return tf.reshape(tf.transpose(yT), [B, Ho, Wo, O]); // [B·Ho·Wo, O] → [B, Ho, Wo, O]
    }
    const [[t, b], [l, r]] = conv.padding;
    return tf.conv2d(x, conv.kernel ?? hwio(conv.weight), conv.stride, [
      [0, 0],
      [t, b],
      [l, r],
      [0, 0],
    ]);
  },
  convKernel: () => undefined,
  tensorFilledBy: heapTensorFilledBy,
};

/**
 * The wasm backend with @png/native-kernels (see native_kernels.ts): tfjs' own ops, as on the
 * portable backends, since the native BatchMatMul reads transposed operands in place and the
 * native Conv2D runs every geometry at full speed. A conv weight is transposed to HWIO per call
 * (no load-time copy, as for `wasmStrategy`); weights are loaded straight into the wasm heap.
 */
export const nativeWasmStrategy: BackendStrategy = {
  ...portableStrategy,
  convKernel: () => undefined,
  tensorFilledBy: heapTensorFilledBy,
};
