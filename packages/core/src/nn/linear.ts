import * as tf from '@tensorflow/tfjs-core';
import { backendStrategy } from '../backends/backend';
import type { WeightScope } from '../weights';

/**
 * Torch `nn.Linear`: y = x·Wᵀ + b. The weight stays in the checkpoint's [out, in] layout (loading
 * copies bytes, nothing is transposed); the current backend's strategy computes the product.
 * Works on any leading shape.
 */
export class Linear {
  readonly weight: tf.Tensor2D; // [out, in]
  readonly bias?: tf.Tensor1D; // [out]

  constructor(
    scope: WeightScope,
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: { bias?: boolean } = {},
  ) {
    const bound = 1 / Math.sqrt(inFeatures); // torch's default init, used by fresh scopes
    this.weight = scope.param('weight', [outFeatures, inFeatures], { init: { uniform: bound } }) as tf.Tensor2D;
    if (options.bias ?? true) this.bias = scope.param('bias', [outFeatures], { init: { uniform: bound } }) as tf.Tensor1D;
  }

  /** [..., in] → [..., out] */
  forward(x: tf.Tensor): tf.Tensor {
    if (x.shape[x.rank - 1] !== this.inFeatures) throw new Error(`Linear: input [${x.shape}] has ${x.shape[x.rank - 1]} features, expected ${this.inFeatures}`);
    const lead = x.shape.slice(0, -1);
    const x2 = tf.reshape(x, [-1, this.inFeatures]); // [N, in]
    let y: tf.Tensor = backendStrategy().linear(x2 as tf.Tensor2D, this.weight); // [N, out]
    if (this.bias) y = tf.add(y, this.bias);
    return tf.reshape(y, [...lead, this.outFeatures]); // [..., out]
  }
}
