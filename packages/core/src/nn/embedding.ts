import * as tf from '@tensorflow/tfjs-core';
import type { WeightScope } from '../weights';

/** Torch `nn.Embedding`: a [num, dim] table, looked up with gather (no transpose). */
export class Embedding {
  readonly weight: tf.Tensor2D; // [num, dim]

  constructor(
    scope: WeightScope,
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
  ) {
    this.weight = scope.param('weight', [numEmbeddings, embeddingDim], { init: { normal: 1 } }) as tf.Tensor2D;
  }

  /** int32 ids [...] in [0, num) → [..., dim] (range is the caller's contract: tfjs gathers out-of-range ids as zeros). */
  forward(ids: tf.Tensor): tf.Tensor {
    if (ids.dtype !== 'int32') throw new Error(`Embedding: ids must be int32, got ${ids.dtype}`);
    return tf.gather(this.weight, ids);
  }
}
