import * as tf from '@tensorflow/tfjs-core';
import type { Layout, WeightScope } from '../weights';

/** Torch OIHW ⇄ tfjs HWIO. */
export const OIHW_TO_HWIO: Layout = {
  fromTorch: (t) => tf.transpose(t, [2, 3, 1, 0]),
  toTorch: (t) => tf.transpose(t, [3, 2, 0, 1]),
};

/** Explicit padding in PyTorch terms: a symmetric pad, or [[top, bottom], [left, right]]. */
export type Conv2dPadding = number | readonly [readonly [number, number], readonly [number, number]];

/**
 * Torch `nn.Conv2d` on NHWC input: the weight is stored as torch's [out, in, kh, kw] in the
 * checkpoint and kept as HWIO here. Padding is explicit, never 'same'.
 */
export class Conv2d {
  readonly weight: tf.Tensor4D; // [kh, kw, in, out]
  readonly bias?: tf.Tensor1D; // [out]
  private readonly pad: [[number, number], [number, number], [number, number], [number, number]];

  constructor(
    scope: WeightScope,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    options: { stride?: number; padding?: Conv2dPadding; bias?: boolean } = {},
  ) {
    const fanIn = inChannels * kernelSize * kernelSize;
    const bound = 1 / Math.sqrt(fanIn);
    this.weight = scope.param('weight', [outChannels, inChannels, kernelSize, kernelSize], { init: { uniform: bound }, layout: OIHW_TO_HWIO }) as tf.Tensor4D;
    if (options.bias ?? true) this.bias = scope.param('bias', [outChannels], { init: { uniform: bound } }) as tf.Tensor1D;
    this.stride = options.stride ?? 1;
    const p = options.padding ?? 0;
    const [[t, b], [l, r]] = typeof p === 'number' ? [[p, p], [p, p]] : p;
    this.pad = [[0, 0], [t, b], [l, r], [0, 0]];
  }

  readonly stride: number;

  /** [B, H, W, in] → [B, H', W', out] */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    if (x.shape[3] !== this.inChannels) {
      throw new Error(`Conv2d: input has ${x.shape[3]} channels, expected ${this.inChannels} (input shape [${x.shape}])`);
    }
    let y = tf.conv2d(x, this.weight, this.stride, this.pad);
    if (this.bias) y = tf.add(y, this.bias);
    return y;
  }
}
