import * as tf from '@tensorflow/tfjs-core';
import type { WeightScope } from '../weights';

/** Torch `nn.LayerNorm` over the last axis. */
export class LayerNorm {
  readonly weight?: tf.Tensor1D; // [D]
  readonly bias?: tf.Tensor1D; // [D]

  constructor(
    scope: WeightScope,
    readonly dim: number,
    readonly eps: number,
    options: { affine?: boolean } = {},
  ) {
    if (options.affine ?? true) {
      this.weight = scope.param('weight', [dim], { init: 'ones' }) as tf.Tensor1D;
      this.bias = scope.param('bias', [dim], { init: 'zeros' }) as tf.Tensor1D;
    }
  }

  /** [..., D] → [..., D] */
  forward(x: tf.Tensor): tf.Tensor {
    if (x.shape[x.rank - 1] !== this.dim) throw new Error(`LayerNorm: last axis is ${x.shape[x.rank - 1]}, expected ${this.dim} (input shape [${x.shape}])`);
    const { mean, variance } = tf.moments(x, -1, true);
    let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.eps)));
    if (this.weight && this.bias) y = tf.add(tf.mul(y, this.weight), this.bias);
    return y;
  }
}
