import * as tf from '@tensorflow/tfjs-core';
import {
  GroupNorm,
  HookedModule,
  Linear,
  attentionWithProbs,
  keyMaskBias,
  mergeHeads,
  splitHeads,
  type ForwardContext,
  type ModelRuntime,
  type WeightScope,
} from '@png/core';

export interface AttentionOptions {
  readonly queryDim: number;
  /** Width of the context; undefined for self-attention. */
  readonly crossAttentionDim?: number;
  readonly heads: number;
  readonly dimHead: number;
  /** Bias on to_q/to_k/to_v (false in the UNet, true in the VAE). */
  readonly bias?: boolean;
  readonly outBias?: boolean;
  /** GroupNorm over the input (the VAE's mid-block attention): groups and eps. */
  readonly groupNorm?: { readonly groups: number; readonly eps: number };
  readonly residualConnection?: boolean;
  readonly rescaleOutputFactor?: number;
}

/** What a processor receives besides the attention module and its [B, N, C] input. */
export interface AttentionProcessorArgs {
  /** Context tokens [B, M, D]; undefined for self-attention. */
  readonly encoderHiddenStates?: tf.Tensor3D;
  /** Key mask [B, M] (1 = attend), for the context tokens. */
  readonly encoderAttentionMask?: tf.Tensor2D;
  /** Spatial size of the image tokens: N = H·W. */
  readonly spatial?: readonly [number, number];
  readonly context: ForwardContext;
}

/**
 * Does the attention math of an `Attention` module (cf. diffusers' attention processors): it may
 * read the module's weights (`attn.to_q` …) and the per-forward context, and returns [B, N, C].
 */
export type AttentionProcessor = (attn: Attention, hiddenStates: tf.Tensor3D, args: AttentionProcessorArgs) => tf.Tensor3D;

/**
 * diffusers `AttnProcessor`: (group norm) → q from the tokens, k/v from the context (or the
 * tokens) → softmax(q·kᵀ/√d)·v per head → to_out.0 → (residual) → ÷ rescale_output_factor.
 */
export const AttnProcessor: AttentionProcessor = (attn, hiddenStates, { encoderHiddenStates, encoderAttentionMask }) => {
  const residual = hiddenStates;
  let x = hiddenStates;
  if (attn.group_norm) {
    const [b, n, c] = x.shape;
    x = tf.reshape(attn.group_norm.forward(tf.reshape(x, [b, n, 1, c]) as tf.Tensor4D), [b, n, c]); // [B, N, C]
  }
  const ctx = encoderHiddenStates ?? x;
  const out = attn.attend(attn.to_q.forward(x) as tf.Tensor3D, attn.to_k.forward(ctx) as tf.Tensor3D, attn.to_v.forward(ctx) as tf.Tensor3D, encoderAttentionMask);
  let y = attn.to_out.forward(out) as tf.Tensor3D;
  if (attn.residualConnection) y = tf.add(y, residual);
  return attn.rescaleOutputFactor === 1 ? y : (tf.div(y, attn.rescaleOutputFactor) as tf.Tensor3D);
};

/**
 * diffusers `Attention`: holds to_q/to_k/to_v/to_out.0 (and the VAE's group_norm) and delegates
 * the math to a swappable processor, keyed by `<path>.processor`. Old VAE checkpoints name the
 * projections query/key/value/proj_attn; those names are read (and written back) as they are.
 */
export class Attention extends HookedModule {
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: Linear;
  readonly group_norm?: GroupNorm;
  readonly heads: number;
  readonly dimHead: number;
  readonly scale: number;
  readonly residualConnection: boolean;
  readonly rescaleOutputFactor: number;
  readonly isCrossAttention: boolean;
  processor: AttentionProcessor = AttnProcessor;

  constructor(scope: WeightScope, runtime: ModelRuntime, o: AttentionOptions) {
    super(scope, runtime);
    const inner = o.heads * o.dimHead;
    const ctxDim = o.crossAttentionDim ?? o.queryDim;
    const legacy = scope.has('query.weight');
    const bias = o.bias ?? false;
    if (o.groupNorm) this.group_norm = new GroupNorm(scope.pp('group_norm'), o.groupNorm.groups, o.queryDim, o.groupNorm.eps);
    this.to_q = new Linear(scope.pp(legacy ? 'query' : 'to_q'), o.queryDim, inner, { bias });
    this.to_k = new Linear(scope.pp(legacy ? 'key' : 'to_k'), ctxDim, inner, { bias });
    this.to_v = new Linear(scope.pp(legacy ? 'value' : 'to_v'), ctxDim, inner, { bias });
    this.to_out = new Linear(scope.pp(legacy ? 'proj_attn' : 'to_out.0'), inner, o.queryDim, { bias: o.outBias ?? true });
    this.heads = o.heads;
    this.dimHead = o.dimHead;
    this.scale = 1 / Math.sqrt(o.dimHead);
    this.residualConnection = o.residualConnection ?? false;
    this.rescaleOutputFactor = o.rescaleOutputFactor ?? 1;
    this.isCrossAttention = o.crossAttentionDim !== undefined;
  }

  /**
   * Multi-head attention of projected q [B, N, H·d] over k, v [B, M, H·d] with an optional key
   * mask [B, M]; returns [B, N, H·d] (before to_out). For processors to reuse.
   */
  attend(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, keyMask?: tf.Tensor2D): tf.Tensor3D {
    return this.attendWithProbs(q, k, v, keyMask).out;
  }

  /** As `attend`, also returning the attention probabilities [B, H, N, M] (for recording them). */
  attendWithProbs(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, keyMask?: tf.Tensor2D): { out: tf.Tensor3D; probs: tf.Tensor4D } {
    const bias = keyMask ? keyMaskBias(keyMask) : undefined;
    const { out, probs } = attentionWithProbs(splitHeads(q, this.heads), splitHeads(k, this.heads), splitHeads(v, this.heads), { bias, scale: this.scale });
    return { out: mergeHeads(out), probs }; // out [B, N, H·d]
  }

  /** Tokens [B, N, C] or an NHWC map [B, H, W, C] (flattened to tokens and back). */
  forward<T extends tf.Tensor3D | tf.Tensor4D>(x: T, args: Omit<AttentionProcessorArgs, 'spatial'> & { spatial?: readonly [number, number] }): T {
    return this.hooked(x, args.context, (input) => {
      if (input.rank === 4) {
        const [b, h, w, c] = input.shape as [number, number, number, number];
        const tokens = tf.reshape(input, [b, h * w, c]) as tf.Tensor3D; // [B, HW, C]
        return tf.reshape(this.processor(this, tokens, { ...args, spatial: [h, w] }), [b, h, w, c]) as T; // [B, H, W, C]
      }
      return this.processor(this, input as tf.Tensor3D, args) as T;
    });
  }
}
