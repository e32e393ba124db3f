import * as tf from '@tensorflow/tfjs-core';
import type { WeightScope } from '../weights';

/**
 * Torch `nn.GroupNorm` on NHWC input. PyTorch groups contiguous channels: channel c belongs to
 * group ⌊c / (C/G)⌋, so [B, H, W, C] is viewed as [B, H, W, G, C/G] and normalised over H, W, C/G.
 */
export class GroupNorm {
  readonly weight?: tf.Tensor1D; // [C]
  readonly bias?: tf.Tensor1D; // [C]

  constructor(
    scope: WeightScope,
    readonly numGroups: number,
    readonly numChannels: number,
    readonly eps: number,
    options: { affine?: boolean } = {},
  ) {
    if (numChannels % numGroups !== 0) throw new Error(`GroupNorm '${scope.prefix}': ${numChannels} channels cannot be split into ${numGroups} groups`);
    if (options.affine ?? true) {
      this.weight = scope.param('weight', [numChannels], { init: 'ones' }) as tf.Tensor1D;
      this.bias = scope.param('bias', [numChannels], { init: 'zeros' }) as tf.Tensor1D;
    }
  }

  /** [B, H, W, C] → [B, H, W, C] */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    if (c !== this.numChannels) throw new Error(`GroupNorm: input has ${c} channels, expected ${this.numChannels} (input shape [${x.shape}])`);
    const g = this.numGroups;
    const grouped = tf.reshape(x, [b, h * w, g, c / g]); // [B, HW, G, C/G]
    const { mean, variance } = tf.moments(grouped, [1, 3], true); // [B, 1, G, 1]
    const normed = tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, this.eps)));
    let y = tf.reshape(normed, [b, h, w, c]) as tf.Tensor4D; // [B, H, W, C]
    if (this.weight && this.bias) y = tf.add(tf.mul(y, this.weight), this.bias);
    return y;
  }
}
