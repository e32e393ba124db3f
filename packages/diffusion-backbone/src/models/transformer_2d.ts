import * as tf from '@tensorflow/tfjs-core';
import { Conv2d, GroupNorm, HookedModule, Linear, hookedLeaf, type ForwardContext, type ModelRuntime, type WeightScope } from '@png/core';
import { BasicTransformerBlock, type FeedForwardActivation } from './attention';

export interface Transformer2DModelOptions {
  readonly heads: number;
  readonly dimHead: number;
  readonly inChannels: number;
  readonly numLayers: number;
  readonly crossAttentionDim: number;
  readonly normNumGroups: number;
  readonly useLinearProjection: boolean;
  readonly onlyCrossAttention: boolean;
  readonly activationFn?: FeedForwardActivation;
}

/**
 * diffusers `Transformer2DModel` for continuous (NHWC) input: GroupNorm (eps 1e-6) → proj_in
 * (1×1 conv, or linear on tokens) → transformer_blocks → proj_out → + residual.
 */
export class Transformer2DModel extends HookedModule {
  readonly norm: GroupNorm;
  readonly proj_in: Conv2d | Linear;
  readonly transformer_blocks: BasicTransformerBlock[] = [];
  readonly proj_out: Conv2d | Linear;
  private readonly inner: number;

  constructor(scope: WeightScope, runtime: ModelRuntime, o: Transformer2DModelOptions) {
    super(scope, runtime);
    this.inner = o.heads * o.dimHead;
    this.norm = new GroupNorm(scope.pp('norm'), o.normNumGroups, o.inChannels, 1e-6);
    this.proj_in = o.useLinearProjection ? new Linear(scope.pp('proj_in'), o.inChannels, this.inner) : new Conv2d(scope.pp('proj_in'), o.inChannels, this.inner, 1);
    for (let i = 0; i < o.numLayers; i++) {
      this.transformer_blocks.push(
        new BasicTransformerBlock(scope.pp('transformer_blocks').pp(i), runtime, {
          dim: this.inner,
          heads: o.heads,
          dimHead: o.dimHead,
          crossAttentionDim: o.crossAttentionDim,
          onlyCrossAttention: o.onlyCrossAttention,
          activationFn: o.activationFn ?? 'geglu',
          attentionBias: false,
          normEps: 1e-5,
        }),
      );
    }
    this.proj_out = o.useLinearProjection ? new Linear(scope.pp('proj_out'), this.inner, o.inChannels) : new Conv2d(scope.pp('proj_out'), this.inner, o.inChannels, 1);
  }

  /** x [B, H, W, C], context [B, M, D] → [B, H, W, C] */
  forward(x: tf.Tensor4D, args: { encoderHiddenStates: tf.Tensor3D; encoderAttentionMask?: tf.Tensor2D; context: ForwardContext }): tf.Tensor4D {
    return this.hooked(x, args.context, (input) => {
      const [b, h, w, c] = input.shape;
      const normed = hookedLeaf(this.runtime, `${this.path}.norm`, input, args.context, (t) => this.norm.forward(t));
      let tokens: tf.Tensor3D;
      if (this.proj_in instanceof Conv2d) {
        const projected = hookedLeaf(this.runtime, `${this.path}.proj_in`, normed, args.context, (t) => (this.proj_in as Conv2d).forward(t));
        tokens = tf.reshape(projected, [b, h * w, this.inner]); // [B, HW, inner]
      } else {
        tokens = this.proj_in.forward(tf.reshape(normed, [b, h * w, c])) as tf.Tensor3D; // [B, HW, inner]
      }
      const spatial = [h, w] as const;
      for (const block of this.transformer_blocks) tokens = block.forward(tokens, { ...args, spatial });
      let out: tf.Tensor4D;
      if (this.proj_out instanceof Conv2d) {
        out = this.proj_out.forward(tf.reshape(tokens, [b, h, w, this.inner])); // [B, H, W, inner] → [B, H, W, C]
      } else {
        out = tf.reshape(this.proj_out.forward(tokens), [b, h, w, c]); // [B, H, W, C]
      }
      return tf.add(out, input) as tf.Tensor4D;
    });
  }

}
