import * as tf from '@tensorflow/tfjs-core';
import type { WeightScope } from '../weights';
import { matMulTransposedWeight, streamedWeightProduct, streamsWeight } from './matmul';

/** Explicit padding in PyTorch terms: a symmetric pad, or [[top, bottom], [left, right]]. */
export type Conv2dPadding = number | readonly [readonly [number, number], readonly [number, number]];

/**
 * Torch `nn.Conv2d` on NHWC input. The weight stays in the checkpoint's [out, in, kh, kw] layout
 * (loading copies bytes, nothing is transposed). Padding is explicit, never 'same'.
 *
 * A 1×1 convolution is a Linear over pixels. Otherwise, where a frozen weight outweighs the
 * activation (see streamsWeight: SD's 16×16 to 4×4 latents, 640–1,280 channels), the convolution
 * runs as im2col and a streamed product, yᵀ = W[O, I·kh·kw] · colsᵀ, so the weight is never packed
 * or copied; else as tf.conv2d on the weight transposed to HWIO.
 */
export class Conv2d {
  readonly weight: tf.Tensor4D; // [out, in, kh, kw]
  readonly bias?: tf.Tensor1D; // [out]
  readonly stride: number;
  private readonly padding: [[number, number], [number, number]];

  constructor(
    scope: WeightScope,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    options: { stride?: number; padding?: Conv2dPadding; bias?: boolean } = {},
  ) {
    const fanIn = inChannels * kernelSize * kernelSize;
    const bound = 1 / Math.sqrt(fanIn);
    this.weight = scope.param('weight', [outChannels, inChannels, kernelSize, kernelSize], { init: { uniform: bound } }) as tf.Tensor4D;
    if (options.bias ?? true) this.bias = scope.param('bias', [outChannels], { init: { uniform: bound } }) as tf.Tensor1D;
    this.stride = options.stride ?? 1;
    const p = options.padding ?? 0;
    const [[t, b], [l, r]] = typeof p === 'number' ? [[p, p], [p, p]] : p;
    this.padding = [[t, b], [l, r]];
  }

  /** [B, H, W, in] → [B, H', W', out] */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    if (x.shape[3] !== this.inChannels) {
      throw new Error(`Conv2d: input has ${x.shape[3]} channels, expected ${this.inChannels} (input shape [${x.shape}])`);
    }
    const [B, H, W] = x.shape;
    const [[t, b], [l, r]] = this.padding;
    const [k, s] = [this.kernelSize, this.stride];
    const [Ho, Wo] = [Math.floor((H + t + b - k) / s) + 1, Math.floor((W + l + r - k) / s) + 1];
    if (Ho < 1 || Wo < 1) throw new Error(`Conv2d: input [${x.shape}] is smaller than the ${k}×${k} kernel`);
    let y: tf.Tensor4D;
    if (k === 1 && s === 1 && t + b + l + r === 0) {
      y = tf.reshape(matMulTransposedWeight(tf.reshape(x, [B * H * W, this.inChannels]) as tf.Tensor2D, this.weight), [B, H, W, this.outChannels]); // [B·H·W, O] → [B, H, W, O]
    } else if (streamsWeight(this.weight, B * Ho * Wo)) {
      const yT = streamedWeightProduct(this.weight, this.im2colT(x, Ho, Wo)); // [O, I·kh·kw] · [I·kh·kw, B·Ho·Wo] → [O, B·Ho·Wo]
      y = tf.reshape(tf.transpose(yT), [B, Ho, Wo, this.outChannels]); // [B·Ho·Wo, O] → [B, Ho, Wo, O]
    } else {
      const hwio = tf.transpose(this.weight, [2, 3, 1, 0]) as tf.Tensor4D; // [kh, kw, in, out]
      y = tf.conv2d(x, hwio, s, [[0, 0], [t, b], [l, r], [0, 0]]);
    }
    if (this.bias) y = tf.add(y, this.bias);
    return y;
  }

  /**
   * colsᵀ [I·kh·kw, B·Ho·Wo]: row (i, kh, kw) is input channel i seen through tap (kh, kw) at every
   * output pixel, in the order of the flattened torch weight. With stride s the padded input is
   * first split into its s×s phases (padded[s·y + a, s·x + c] is phase (a, c) at (y, x)), so that
   * every tap is a slice with contiguous rows (wasm slices fast only so).
   */
  private im2colT(x: tf.Tensor4D, Ho: number, Wo: number): tf.Tensor2D {
    const [B, H, W, I] = x.shape;
    const [[t, b], [l, r]] = this.padding;
    const [k, s] = [this.kernelSize, this.stride];
    // tap kh of output row y reads padded row kh + s·y = s·(y + ⌊kh/s⌋) + kh mod s
    const Hq = Math.max(Math.ceil((H + t + b) / s), Math.floor((k - 1) / s) + Ho);
    const Wq = Math.max(Math.ceil((W + l + r) / s), Math.floor((k - 1) / s) + Wo);
    const xc = tf.reshape(tf.transpose(x, [3, 0, 1, 2]), [I * B, H, W]); // [I, B, H, W] → [I·B, H, W]
    let phases = tf.pad(xc, [[0, 0], [t, Hq * s - H - t], [l, Wq * s - W - l]]); // [I·B, Hq·s, Wq·s]
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
}
