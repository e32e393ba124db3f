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
    /** `zeros`: a fresh scope gives weight and bias 0 (the output of a residual branch that starts closed). */
    options: { bias?: boolean; zeros?: boolean } = {},
  ) {
    const bound = 1 / Math.sqrt(inFeatures); // torch's default init, used by fresh scopes
    const init = options.zeros ? 'zeros' : { uniform: bound };
    this.weight = scope.param('weight', [outFeatures, inFeatures], { init }) as tf.Tensor2D;
    if (options.bias ?? true) this.bias = scope.param('bias', [outFeatures], { init }) as tf.Tensor1D;
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
