import * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, Linear, attentionWithProbs, keyMaskBias, mergeHeads, splitHeads, type WeightScope } from '@png/core';
import { createGate, gatedResidual, withPositions, type GateSpec } from './gated_cross_attention';

/**
 * A bottlenecked, gated self-attention; with `contextDim`, GLIGEN's gated self-attention
 * (GatedSelfAttentionDense, its attention part): the context tokens are projected to the token
 * width (`linear`) and appended to the tokens, one LayerNorm normalises both, and the tokens
 * attend to [tokens; context]:
 *
 *     x + tanh(gate) · to_out(MHA(to_q(LN(x)), to_k/to_v(LN([x; linear(context)]))))
 *
 * GLIGEN also computes the context tokens' outputs and drops them; here only the tokens are
 * queries (the same result). GLIGEN's second, gated feed-forward is left out: at the UNet's width
 * it would outweigh the adapter, and the block's own FFN follows. EIPA uses it to inject after a
 * block's self-attention (context = the phrase state) and, without context, as the phrases'
 * self-attention in the extract.
 */
export class GatedSelfAttention {
  /** context width → token width (GLIGEN's `linear`); absent without context. */
  readonly linear?: Linear;
  readonly norm: LayerNorm;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: Linear;
  /** [1] or [C]; absent when ungated. */
  readonly gate?: tf.Tensor;

  constructor(
    scope: WeightScope,
    dim: number,
    bottleneck: number,
    private readonly heads: number,
    gate: GateSpec,
    eps: number,
    contextDim?: number,
  ) {
    if (contextDim !== undefined) this.linear = new Linear(scope.pp('linear'), contextDim, dim);
    this.norm = new LayerNorm(scope.pp('norm'), dim, eps);
    this.to_q = new Linear(scope.pp('to_q'), dim, bottleneck);
    this.to_k = new Linear(scope.pp('to_k'), dim, bottleneck);
    this.to_v = new Linear(scope.pp('to_v'), dim, bottleneck);
    this.to_out = new Linear(scope.pp('to_out'), bottleneck, dim);
    this.gate = createGate(scope, gate, dim);
  }

  /**
   * The ungated update of tokens x [B, N, C] (their keys masked by `mask` [B, N], 1 = attend),
   * with `context` [B, M, Dc] (masked by `contextMask` [B, M]) appended to the keys: update
   * [B, N, C] and the head-averaged attention to the context tokens [B, N, M] (without
   * context: to the tokens, [B, N, N]). `positions` [1 or B, N, C] are added to the normalised
   * tokens (their queries, keys and values), not to the context.
   */
  attend(
    x: tf.Tensor3D,
    options: { mask?: tf.Tensor2D; context?: tf.Tensor3D; contextMask?: tf.Tensor2D; positions?: tf.Tensor3D } = {},
  ): { update: tf.Tensor3D; attention: tf.Tensor3D } {
    const { context } = options;
    const { linear } = this;
    if (context && !linear) throw new Error('GatedSelfAttention: built without a context width; it attends over its tokens only');
    const [b, n] = x.shape;
    const normed = withPositions(this.norm.forward(x), options.positions); // [B, N, C]
    const keys = context && linear ? tf.concat([normed, this.norm.forward(linear.forward(context))], 1) : normed; // [B, N (+ M), C]
    let keyMask: tf.Tensor2D | undefined = options.mask;
    if (context && (options.mask || options.contextMask)) {
      keyMask = tf.concat([options.mask ?? tf.ones([b, n]), options.contextMask ?? tf.ones([b, context.shape[1]])], 1) as tf.Tensor2D; // [B, N + M]
    }
    const q = splitHeads(this.to_q.forward(normed), this.heads); // [B, H, N, r/H]
    const k = splitHeads(this.to_k.forward(keys), this.heads); // [B, H, N (+ M), r/H]
    const v = splitHeads(this.to_v.forward(keys), this.heads);
    const { out, probs } = attentionWithProbs(q, k, v, { bias: keyMask ? keyMaskBias(keyMask) : undefined });
    const mean = tf.mean(probs, 1) as tf.Tensor3D; // [B, N, N (+ M)]
    return {
      update: this.to_out.forward(mergeHeads(out)) as tf.Tensor3D, // [B, N, C]
      attention: context ? (tf.slice(mean, [0, 0, n], [-1, -1, -1]) as tf.Tensor3D) : mean, // [B, N, M] or [B, N, N]
    };
  }

  /** Inject: tokens [B, N, C] (with `positions` [1 or B, N, C]) attend to [tokens; phrases [B, P, D]] (phraseMask [B, P]) → updated tokens [B, N, C] and the attention to the phrases [B, N, P]. */
  forward(tokens: tf.Tensor3D, phrases: tf.Tensor3D, phraseMask?: tf.Tensor2D, positions?: tf.Tensor3D): { out: tf.Tensor3D; attention: tf.Tensor3D } {
    const { update, attention } = this.attend(tokens, { context: phrases, contextMask: phraseMask, positions });
    return { out: gatedResidual(tokens, update, this.gate), attention };
  }
}
