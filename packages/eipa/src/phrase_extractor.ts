import type * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, Linear, gelu, type WeightScope } from '@png/core';
import { GatedCrossAttention, gatedResidual, type GateSpec } from './gated_cross_attention';
import { GatedSelfAttention } from './gated_self_attention';

/** The shape of an extract (see EipaConfig). */
export interface PhraseExtractorOptions {
  readonly bottleneck: number;
  readonly heads: number;
  readonly gate: GateSpec;
  /** The phrases attend to each other after attending to the image tokens. */
  readonly selfAttention: boolean;
  /** Hidden width of the closing FFN; 0: none. */
  readonly ffnDim: number;
  readonly eps: number;
}

/**
 * EIPA's extract at one block: the phrase state attends to the block's image tokens (a
 * GatedCrossAttention), then, as options, to itself (padded phrases masked) and through an FFN
 * (LN → fc1 → GELU → fc2) — a small phrase-side transformer layer. Each is a residual update
 * through the one extract gate (or none: ViT-Adapter's extractor, cross-attention + FFN, is
 * ungated). With only the cross-attention it is today's extract. Weights: the cross-attention's
 * at the root (`norm_q`, `to_q`, …, `gate`), `self_attn.*`, `ffn_norm.*`, `ffn.fc1.*`, `ffn.fc2.*`.
 */
export class PhraseExtractor {
  readonly cross: GatedCrossAttention;
  readonly self_attn?: GatedSelfAttention;
  readonly ffn_norm?: LayerNorm;
  readonly ffn?: { readonly fc1: Linear; readonly fc2: Linear };

  constructor(scope: WeightScope, phraseDim: number, tokenDim: number, o: PhraseExtractorOptions) {
    this.cross = new GatedCrossAttention(scope, phraseDim, tokenDim, o.bottleneck, o.heads, o.gate, o.eps);
    if (o.selfAttention) this.self_attn = new GatedSelfAttention(scope.pp('self_attn'), phraseDim, o.bottleneck, o.heads, { kind: 'none', init: 0 }, o.eps);
    if (o.ffnDim > 0) {
      this.ffn_norm = new LayerNorm(scope.pp('ffn_norm'), phraseDim, o.eps);
      this.ffn = { fc1: new Linear(scope.pp('ffn').pp('fc1'), phraseDim, o.ffnDim), fc2: new Linear(scope.pp('ffn').pp('fc2'), o.ffnDim, phraseDim) };
    }
  }

  /** The extract's gate ([1] or [D]; shared by its updates), absent when ungated. */
  get gate(): tf.Tensor | undefined {
    return this.cross.gate;
  }

  /** phrases [B, P, D] ← tokens [B, N, C] (+ `positions` [1, N, C] in their keys and values); phraseMask [B, P] masks the self-attention's keys → the new phrase state [B, P, D]. */
  forward(phrases: tf.Tensor3D, tokens: tf.Tensor3D, phraseMask: tf.Tensor2D, positions?: tf.Tensor3D): tf.Tensor3D {
    let state = this.cross.forward(phrases, tokens, undefined, { memory: positions }).out;
    if (this.self_attn) state = gatedResidual(state, this.self_attn.attend(state, { mask: phraseMask }).update, this.gate);
    if (this.ffn && this.ffn_norm) {
      const hidden = gelu(this.ffn.fc1.forward(this.ffn_norm.forward(state))); // [B, P, ffnDim]
      state = gatedResidual(state, this.ffn.fc2.forward(hidden) as tf.Tensor3D, this.gate);
    }
    return state;
  }
}
