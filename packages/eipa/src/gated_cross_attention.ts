import * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, Linear, attentionWithProbs, keyMaskBias, mergeHeads, splitHeads, type WeightScope } from '@png/core';
import type { EipaGate } from './config';

/** A gate's kind and initial value. */
export interface GateSpec {
  readonly kind: EipaGate;
  readonly init: number;
}

/** The gate parameter `gate` of `scope`: [1] (scalar), [channels] (per channel), or none. */
export function createGate(scope: WeightScope, spec: GateSpec, channels: number): tf.Tensor | undefined {
  if (spec.kind === 'none') return undefined;
  return scope.param('gate', [spec.kind === 'scalar' ? 1 : channels], { init: { constant: spec.init } });
}

/** x + tanh(gate)·update, or x + update without a gate. x, update [..., C]; gate [1] or [C]. */
export function gatedResidual<T extends tf.Tensor>(x: T, update: T, gate: tf.Tensor | undefined): T {
  return (gate ? tf.add(x, tf.mul(tf.tanh(gate), update)) : tf.add(x, update)) as T;
}

/** tokens [B, N, C] + positions [1 or B, N, C] (none: the tokens). */
export function withPositions<T extends tf.Tensor>(tokens: T, positions: tf.Tensor3D | undefined): T {
  return positions ? (tf.add(tokens, positions) as T) : tokens;
}

/**
 * queries + tanh(gate) · to_out(MHA(to_q(LN(queries)), to_k/to_v(LN(memory)))): a bottlenecked,
 * gated cross-attention (cf. ViT-Adapter's injector/extractor and GLIGEN's gated attention). The
 * gate is one scalar, one per query channel, or none; with a gate at 0 it is exactly the
 * identity. EIPA uses it both ways: phrases ← image tokens (extract) and image tokens ← phrases
 * (inject).
 */
export class GatedCrossAttention {
  readonly norm_q: LayerNorm;
  readonly norm_m: LayerNorm;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: Linear;
  /** [1] or [Dq]; absent when ungated. */
  readonly gate?: tf.Tensor;

  constructor(
    scope: WeightScope,
    queryDim: number,
    memoryDim: number,
    bottleneck: number,
    private readonly heads: number,
    gate: GateSpec,
    eps: number,
  ) {
    this.norm_q = new LayerNorm(scope.pp('norm_q'), queryDim, eps);
    this.norm_m = new LayerNorm(scope.pp('norm_m'), memoryDim, eps);
    this.to_q = new Linear(scope.pp('to_q'), queryDim, bottleneck);
    this.to_k = new Linear(scope.pp('to_k'), memoryDim, bottleneck);
    this.to_v = new Linear(scope.pp('to_v'), memoryDim, bottleneck);
    this.to_out = new Linear(scope.pp('to_out'), bottleneck, queryDim);
    this.gate = createGate(scope, gate, queryDim);
  }

  /**
   * queries [B, N, Dq], memory [B, M, Dm], memoryMask [B, M] (1 = attend) → updated queries
   * [B, N, Dq] and the head-averaged attention [B, N, M]. `positions` are added to the normalised
   * queries ([1 or B, N, Dq]) and memory ([1 or B, M, Dm], so to its keys and values).
   */
  forward(
    queries: tf.Tensor3D,
    memory: tf.Tensor3D,
    memoryMask?: tf.Tensor2D,
    positions: { queries?: tf.Tensor3D; memory?: tf.Tensor3D } = {},
  ): { out: tf.Tensor3D; attention: tf.Tensor3D } {
    const m = withPositions(this.norm_m.forward(memory), positions.memory);
    const q = splitHeads(this.to_q.forward(withPositions(this.norm_q.forward(queries), positions.queries)), this.heads); // [B, H, N, r/H]
    const k = splitHeads(this.to_k.forward(m), this.heads); // [B, H, M, r/H]
    const v = splitHeads(this.to_v.forward(m), this.heads);
    const { out, probs } = attentionWithProbs(q, k, v, { bias: memoryMask ? keyMaskBias(memoryMask) : undefined });
    const update = this.to_out.forward(mergeHeads(out)) as tf.Tensor3D; // [B, N, Dq]
    return {
      out: gatedResidual(queries, update, this.gate),
      attention: tf.mean(probs, 1) as tf.Tensor3D, // [B, N, M]
    };
  }
}
