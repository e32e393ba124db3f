// Port of Mask2Former mask2former/modeling/transformer_decoder/mask2former_transformer_decoder.py::
// {SelfAttentionLayer, CrossAttentionLayer, FFNLayer, MLP} and torch nn.MultiheadAttention (packed
// in_proj_weight / in_proj_bias, out_proj), so checkpoint keys match the upstream state dict.
// Deviations: token sets are [B, N, D] (batch first); attention masks are additive biases
// broadcastable to [B, heads, Nq, Nk]; dropout is omitted (0 at inference, PNG trains without it).
import * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, Linear, mergeHeads, scaledDotProductAttention, splitHeads, type WeightScope } from '@png/core';

const LN_EPS = 1e-5;

/** torch `nn.MultiheadAttention(embed_dim, num_heads)` with batch-first [B, N, E] tensors. */
export class MultiheadAttention {
  readonly in_proj_weight: tf.Tensor2D; // [3E, E]: q, k, v rows
  readonly in_proj_bias: tf.Tensor1D; // [3E]
  readonly out_proj: Linear;

  constructor(
    scope: WeightScope,
    readonly embedDim: number,
    readonly numHeads: number,
  ) {
    const e = embedDim;
    // Mask2Former's _reset_parameters: xavier_uniform_ on every matrix; torch zeroes the in/out biases.
    this.in_proj_weight = scope.param('in_proj_weight', [3 * e, e], { init: { uniform: Math.sqrt(6 / (4 * e)) } }) as tf.Tensor2D;
    this.in_proj_bias = scope.param('in_proj_bias', [3 * e], { init: 'zeros' }) as tf.Tensor1D;
    this.out_proj = new Linear(scope.pp('out_proj'), e, e);
  }

  private project(x: tf.Tensor3D, i: number): tf.Tensor4D {
    const e = this.embedDim;
    const w = tf.slice(this.in_proj_weight, [i * e, 0], [e, e]); // [E, E]
    const b = tf.slice(this.in_proj_bias, [i * e], [e]); // [E]
    const [bs, n] = x.shape;
    const y = tf.add(tf.matMul(tf.reshape(x, [bs * n, e]), w, false, true), b); // [B·N, E]
    return splitHeads(tf.reshape(y, [bs, n, e]), this.numHeads); // [B, h, N, d]
  }

  /** query [B, Nq, E], key and value [B, Nk, E], bias broadcastable to [B, h, Nq, Nk] → [B, Nq, E]. */
  forward(query: tf.Tensor3D, key: tf.Tensor3D, value: tf.Tensor3D, bias?: tf.Tensor): tf.Tensor3D {
    const out = scaledDotProductAttention(this.project(query, 0), this.project(key, 1), this.project(value, 2), { bias }); // [B, h, Nq, d]
    return this.out_proj.forward(mergeHeads(out)) as tf.Tensor3D; // [B, Nq, E]
  }
}

const withPos = (x: tf.Tensor3D, pos?: tf.Tensor): tf.Tensor3D => (pos ? (tf.add(x, pos) as tf.Tensor3D) : x);

/** Self-attention among the queries (phrases); `keyBias` [B, 1, 1, P] masks padding phrases as keys. */
export class SelfAttentionLayer {
  readonly self_attn: MultiheadAttention;
  readonly norm: LayerNorm;

  constructor(
    scope: WeightScope,
    dModel: number,
    nhead: number,
    readonly normalizeBefore: boolean,
  ) {
    this.self_attn = new MultiheadAttention(scope.pp('self_attn'), dModel, nhead);
    this.norm = new LayerNorm(scope.pp('norm'), dModel, LN_EPS);
  }

  forward(tgt: tf.Tensor3D, keyBias?: tf.Tensor, queryPos?: tf.Tensor): tf.Tensor3D {
    if (this.normalizeBefore) {
      const t2 = this.norm.forward(tgt) as tf.Tensor3D;
      const qk = withPos(t2, queryPos);
      return tf.add(tgt, this.self_attn.forward(qk, qk, t2, keyBias)) as tf.Tensor3D;
    }
    const qk = withPos(tgt, queryPos);
    return this.norm.forward(tf.add(tgt, this.self_attn.forward(qk, qk, tgt, keyBias))) as tf.Tensor3D;
  }
}

/** Queries attend to one memory level; `memoryBias` [B, 1, Nq, HW] is the masked-attention bias. */
export class CrossAttentionLayer {
  readonly multihead_attn: MultiheadAttention;
  readonly norm: LayerNorm;

  constructor(
    scope: WeightScope,
    dModel: number,
    nhead: number,
    readonly normalizeBefore: boolean,
  ) {
    this.multihead_attn = new MultiheadAttention(scope.pp('multihead_attn'), dModel, nhead);
    this.norm = new LayerNorm(scope.pp('norm'), dModel, LN_EPS);
  }

  forward(tgt: tf.Tensor3D, memory: tf.Tensor3D, memoryBias: tf.Tensor | undefined, pos: tf.Tensor, queryPos?: tf.Tensor): tf.Tensor3D {
    const key = withPos(memory, pos);
    if (this.normalizeBefore) {
      const t2 = this.norm.forward(tgt) as tf.Tensor3D;
      return tf.add(tgt, this.multihead_attn.forward(withPos(t2, queryPos), key, memory, memoryBias)) as tf.Tensor3D;
    }
    return this.norm.forward(tf.add(tgt, this.multihead_attn.forward(withPos(tgt, queryPos), key, memory, memoryBias))) as tf.Tensor3D;
  }
}

/** linear1 → ReLU → linear2, residual, LayerNorm (post) or LayerNorm first (pre). */
export class FFNLayer {
  readonly linear1: Linear;
  readonly linear2: Linear;
  readonly norm: LayerNorm;

  constructor(
    scope: WeightScope,
    dModel: number,
    dimFeedforward: number,
    readonly normalizeBefore: boolean,
  ) {
    this.linear1 = new Linear(scope.pp('linear1'), dModel, dimFeedforward);
    this.linear2 = new Linear(scope.pp('linear2'), dimFeedforward, dModel);
    this.norm = new LayerNorm(scope.pp('norm'), dModel, LN_EPS);
  }

  forward(tgt: tf.Tensor3D): tf.Tensor3D {
    const ffn = (x: tf.Tensor) => this.linear2.forward(tf.relu(this.linear1.forward(x)));
    if (this.normalizeBefore) return tf.add(tgt, ffn(this.norm.forward(tgt))) as tf.Tensor3D;
    return this.norm.forward(tf.add(tgt, ffn(tgt))) as tf.Tensor3D;
  }
}

/** Mask2Former's MLP ("FFN"): `layers.<i>` Linears with ReLU between. */
export class MLP {
  readonly layers: Linear[] = [];

  constructor(scope: WeightScope, inputDim: number, hiddenDim: number, outputDim: number, numLayers: number) {
    const dims = [inputDim, ...Array(numLayers - 1).fill(hiddenDim), outputDim];
    for (let i = 0; i < numLayers; i++) this.layers.push(new Linear(scope.pp('layers').pp(i), dims[i], dims[i + 1]));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.layers.reduce((h, layer, i) => (i < this.layers.length - 1 ? tf.relu(layer.forward(h)) : layer.forward(h)), x);
  }
}
