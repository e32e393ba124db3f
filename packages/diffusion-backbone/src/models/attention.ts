import * as tf from '@tensorflow/tfjs-core';
import { HookedModule, LayerNorm, Linear, hookedLeaf, type ForwardContext, type ModelRuntime, type WeightScope } from '@png/core';
import { GEGLU, GELU } from './activations';
import { Attention } from './attention_processor';

/** The feed-forward activations of diffusers' `FeedForward` that SD-family UNets use. */
export type FeedForwardActivation = 'geglu' | 'gelu' | 'gelu-approximate';

/**
 * diffusers `FeedForward`: net.0 the activation with its input projection (GEGLU or GELU, weights
 * `net.0.proj`), net.1 dropout (identity at inference, no weights), net.2 the output projection.
 */
export class FeedForward extends HookedModule {
  readonly net: { readonly 0: GEGLU | GELU; readonly 2: Linear };

  constructor(scope: WeightScope, runtime: ModelRuntime, dim: number, kind: FeedForwardActivation, mult = 4) {
    super(scope, runtime);
    const inner = dim * mult;
    this.net = {
      0: kind === 'geglu' ? new GEGLU(scope.pp('net.0'), dim, inner) : new GELU(scope.pp('net.0'), dim, inner, kind === 'gelu' ? 'none' : 'tanh'),
      2: new Linear(scope.pp('net.2'), inner, dim),
    };
  }

  /** [B, N, C] → [B, N, C] */
  forward(x: tf.Tensor3D, context: ForwardContext): tf.Tensor3D {
    return this.hooked(x, context, (input) => this.net[2].forward(this.net[0].forward(input)) as tf.Tensor3D);
  }
}

export interface BasicTransformerBlockOptions {
  readonly dim: number;
  readonly heads: number;
  readonly dimHead: number;
  readonly crossAttentionDim: number;
  readonly onlyCrossAttention: boolean;
  readonly activationFn: FeedForwardActivation;
  readonly attentionBias: boolean;
  readonly normEps: number;
}

/**
 * diffusers `BasicTransformerBlock` (norm_type 'layer_norm'): self-attention (attn1), cross-
 * attention to the context (attn2), feed-forward, each pre-normed and residual. Between attn1 and
 * attn2 the path `<block>.fuser` can be hooked (where diffusers' GLIGEN blocks run their fuser).
 */
export class BasicTransformerBlock extends HookedModule {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;
  private readonly onlyCrossAttention: boolean;

  constructor(scope: WeightScope, runtime: ModelRuntime, o: BasicTransformerBlockOptions) {
    super(scope, runtime);
    const attn = { queryDim: o.dim, heads: o.heads, dimHead: o.dimHead, bias: o.attentionBias };
    this.onlyCrossAttention = o.onlyCrossAttention;
    this.norm1 = new LayerNorm(scope.pp('norm1'), o.dim, o.normEps);
    this.attn1 = new Attention(scope.pp('attn1'), runtime, { ...attn, crossAttentionDim: o.onlyCrossAttention ? o.crossAttentionDim : undefined });
    this.norm2 = new LayerNorm(scope.pp('norm2'), o.dim, o.normEps);
    this.attn2 = new Attention(scope.pp('attn2'), runtime, { ...attn, crossAttentionDim: o.crossAttentionDim });
    this.norm3 = new LayerNorm(scope.pp('norm3'), o.dim, o.normEps);
    this.ff = new FeedForward(scope.pp('ff'), runtime, o.dim, o.activationFn);
  }

  /** tokens [B, HW, C], context [B, M, D] → [B, HW, C] */
  forward(
    x: tf.Tensor3D,
    args: { encoderHiddenStates: tf.Tensor3D; encoderAttentionMask?: tf.Tensor2D; spatial: readonly [number, number]; context: ForwardContext },
  ): tf.Tensor3D {
    return this.hooked(x, args.context, (input) => {
      const { context, spatial } = args;
      const selfCtx = this.onlyCrossAttention ? { encoderHiddenStates: args.encoderHiddenStates, encoderAttentionMask: args.encoderAttentionMask } : {};
      let h = tf.add(this.attn1.forward(this.norm1.forward(input) as tf.Tensor3D, { ...selfCtx, spatial, context }), input) as tf.Tensor3D;
      h = hookedLeaf(this.runtime, `${this.path}.fuser`, h, context, (t) => t); // diffusers' GLIGEN `fuser` position: a hook point, the identity unless hooked
      const cross = { encoderHiddenStates: args.encoderHiddenStates, encoderAttentionMask: args.encoderAttentionMask, spatial, context };
      h = tf.add(this.attn2.forward(this.norm2.forward(h) as tf.Tensor3D, cross), h) as tf.Tensor3D;
      return tf.add(this.ff.forward(this.norm3.forward(h) as tf.Tensor3D, context), h) as tf.Tensor3D;
    });
  }
}
