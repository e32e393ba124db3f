import * as tf from '@tensorflow/tfjs-core';
import type { Layout, WeightScope } from '../weights';
import { matMul2d } from './matmul';

/** Torch [out, in] ⇄ stored [in, out], so the forward is a plain matMul (fast on every backend). */
export const OUT_IN_TO_IN_OUT: Layout = {
  fromTorch: (t) => tf.transpose(t),
  toTorch: (t) => tf.transpose(t),
};

/** Torch `nn.Linear`: y = x·Wᵀ + b. The checkpoint's [out, in] weight is kept as [in, out]. Works on any leading shape. */
export class Linear {
  readonly weight: tf.Tensor2D; // [in, out]
  readonly bias?: tf.Tensor1D; // [out]

  constructor(
    scope: WeightScope,
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: { bias?: boolean } = {},
  ) {
    const bound = 1 / Math.sqrt(inFeatures); // torch's default init, used by fresh scopes
    this.weight = scope.param('weight', [outFeatures, inFeatures], { init: { uniform: bound }, layout: OUT_IN_TO_IN_OUT }) as tf.Tensor2D;
    if (options.bias ?? true) this.bias = scope.param('bias', [outFeatures], { init: { uniform: bound } }) as tf.Tensor1D;
  }

  /** [..., in] → [..., out] */
  forward(x: tf.Tensor): tf.Tensor {
    const lead = x.shape.slice(0, -1);
    const x2 = tf.reshape(x, [-1, this.inFeatures]); // [N, in]
    let y: tf.Tensor = matMul2d(x2 as tf.Tensor2D, this.weight); // [N, out]
    if (this.bias) y = tf.add(y, this.bias);
    return tf.reshape(y, [...lead, this.outFeatures]); // [..., out]
  }
}
