// The per-level block of MLMA (DESIGN.md §1, part 4): projections of one image level and of the
// phrase state at that level into the shared width, rounds of reciprocal cross-attention
// (image←phrase and phrase←image, each residual + LayerNorm), and the level's top-down output
// conv; and the optional attention of the phrase states of all levels to each other.
import * as tf from '@tensorflow/tfjs-core';
import { Conv2d, GroupNorm, LayerNorm, Linear, keyMaskBias, mergeHeads, scaledDotProductAttention, splitHeads, type WeightScope } from '@png/core';

const NORM_EPS = 1e-5;

/** Multi-head cross-attention with diffusers' projection names (to_q, to_k, to_v, to_out). */
export class CrossAttention {
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: Linear;

  constructor(
    scope: WeightScope,
    readonly dim: number,
    readonly heads: number,
  ) {
    this.to_q = new Linear(scope.pp('to_q'), dim, dim);
    this.to_k = new Linear(scope.pp('to_k'), dim, dim);
    this.to_v = new Linear(scope.pp('to_v'), dim, dim);
    this.to_out = new Linear(scope.pp('to_out'), dim, dim);
  }

  /** queries [B, Nq, D] attend to context [B, Nk, D]; `keyMask` [B, Nk] (1 = real). Returns [B, Nq, D]. */
  forward(queries: tf.Tensor3D, context: tf.Tensor3D, keyMask?: tf.Tensor2D): tf.Tensor3D {
    const q = splitHeads(this.to_q.forward(queries), this.heads); // [B, h, Nq, d]
    const k = splitHeads(this.to_k.forward(context), this.heads); // [B, h, Nk, d]
    const v = splitHeads(this.to_v.forward(context), this.heads); // [B, h, Nk, d]
    const out = scaledDotProductAttention(q, k, v, { bias: keyMask ? keyMaskBias(keyMask) : undefined }); // [B, h, Nq, d]
    return this.to_out.forward(mergeHeads(out)) as tf.Tensor3D; // [B, Nq, D]
  }
}

export interface MlmaLevelOptions {
  imageChannels: number;
  phraseDim: number;
  hiddenDim: number;
  heads: number;
  groups: number;
  mutual: boolean;
  /** Rounds of reciprocal attention (with `mutual`). */
  rounds: number;
}

/** One round of reciprocal attention at a level: image←phrase and phrase←image, each residual + LayerNorm. */
export class MutualRound {
  readonly image_from_phrase: CrossAttention;
  readonly image_from_phrase_norm: LayerNorm;
  readonly phrase_from_image: CrossAttention;
  readonly phrase_from_image_norm: LayerNorm;

  constructor(scope: WeightScope, hiddenDim: number, heads: number) {
    this.image_from_phrase = new CrossAttention(scope.pp('image_from_phrase'), hiddenDim, heads);
    this.image_from_phrase_norm = new LayerNorm(scope.pp('image_from_phrase_norm'), hiddenDim, NORM_EPS);
    this.phrase_from_image = new CrossAttention(scope.pp('phrase_from_image'), hiddenDim, heads);
    this.phrase_from_image_norm = new LayerNorm(scope.pp('phrase_from_image_norm'), hiddenDim, NORM_EPS);
  }

  /** image [B, H, W, D], phrases [B, P, D], mask [B, P], hasReal [B, 1, 1] → both updated, same shapes. */
  forward(image: tf.Tensor4D, phrases: tf.Tensor3D, mask: tf.Tensor2D, hasReal: tf.Tensor): { image: tf.Tensor4D; phrases: tf.Tensor3D } {
    const [b, h, w, d] = image.shape;
    const tokens = tf.reshape(image, [b, h * w, d]) as tf.Tensor3D; // [B, HW, D]
    // Both directions read the states as the round found them (symmetric, no order between the two updates).
    // A sample with no real phrase gets no image update (its softmax would only see padding).
    const imageUpdate = tf.mul(this.image_from_phrase.forward(tokens, phrases, mask), hasReal); // [B, HW, D]
    const phraseUpdate = this.phrase_from_image.forward(phrases, tokens); // [B, P, D]
    const t = this.image_from_phrase_norm.forward(tf.add(tokens, imageUpdate)); // [B, HW, D]
    const q = this.phrase_from_image_norm.forward(tf.add(phrases, phraseUpdate)) as tf.Tensor3D; // [B, P, D]
    return { image: tf.reshape(t, [b, h, w, d]) as tf.Tensor4D, phrases: q }; // [B, H, W, D]
  }
}

/**
 * One level: `levels.<i>.*` in the checkpoint; its first round of reciprocal attention under the
 * level's own keys (`levels.<i>.image_from_phrase.*`, …), round r ≥ 1 under `levels.<i>.rounds.<r>.*`.
 */
export class MlmaLevel {
  readonly image_proj: Conv2d;
  readonly image_proj_norm: GroupNorm;
  readonly phrase_proj: Linear;
  readonly phrase_proj_norm: LayerNorm;
  /** The rounds of reciprocal attention, in order ([] without `mutual`). */
  readonly rounds: MutualRound[] = [];
  readonly output_conv: Conv2d;
  readonly output_norm: GroupNorm;

  constructor(scope: WeightScope, o: MlmaLevelOptions) {
    this.image_proj = new Conv2d(scope.pp('image_proj'), o.imageChannels, o.hiddenDim, 1);
    this.image_proj_norm = new GroupNorm(scope.pp('image_proj_norm'), o.groups, o.hiddenDim, NORM_EPS);
    this.phrase_proj = new Linear(scope.pp('phrase_proj'), o.phraseDim, o.hiddenDim);
    this.phrase_proj_norm = new LayerNorm(scope.pp('phrase_proj_norm'), o.hiddenDim, NORM_EPS);
    if (o.mutual) {
      for (let r = 0; r < o.rounds; r++) this.rounds.push(new MutualRound(r === 0 ? scope : scope.pp('rounds').pp(r), o.hiddenDim, o.heads));
    }
    // 3×3 conv without bias (a norm follows), as detectron2/Mask2Former's FPN `layer_i`.
    this.output_conv = new Conv2d(scope.pp('output_conv'), o.hiddenDim, o.hiddenDim, 3, { padding: 1, bias: false });
    this.output_norm = new GroupNorm(scope.pp('output_norm'), o.groups, o.hiddenDim, NORM_EPS);
  }

  /** image [B, H, W, C_l] and phrases [B, P, phrase_dim] projected to the shared width: [B, H, W, D], [B, P, D]. */
  project(image: tf.Tensor4D, phrases: tf.Tensor3D): { image: tf.Tensor4D; phrases: tf.Tensor3D } {
    const x = this.image_proj_norm.forward(this.image_proj.forward(image)); // [B, H, W, D]
    const p = this.phrase_proj_norm.forward(this.phrase_proj.forward(phrases)) as tf.Tensor3D; // [B, P, D]
    return { image: x, phrases: p };
  }

  /** The top-down output conv: ReLU(GroupNorm(conv3×3(x))). [B, H, W, D] → [B, H, W, D]. */
  output(x: tf.Tensor4D): tf.Tensor4D {
    return tf.relu(this.output_norm.forward(this.output_conv.forward(x)));
  }
}

/**
 * One skip level: `skip_levels.<i>.*` in the checkpoint. A feature map finer than every image
 * level joins the top-down path through a lateral projection only (no phrase attention), as
 * Mask2Former's pixel decoder joins its stride-4 backbone map (`adapter_1` + `layer_1`):
 * out = ReLU(GN(conv3×3(GN(conv1×1(skip)) + up(coarser out)))).
 */
export class MlmaSkipLevel {
  readonly lateral_conv: Conv2d;
  readonly lateral_norm: GroupNorm;
  readonly output_conv: Conv2d;
  readonly output_norm: GroupNorm;

  constructor(scope: WeightScope, o: { channels: number; hiddenDim: number; groups: number }) {
    // Both convs without bias (a norm follows each).
    this.lateral_conv = new Conv2d(scope.pp('lateral_conv'), o.channels, o.hiddenDim, 1, { bias: false });
    this.lateral_norm = new GroupNorm(scope.pp('lateral_norm'), o.groups, o.hiddenDim, NORM_EPS);
    this.output_conv = new Conv2d(scope.pp('output_conv'), o.hiddenDim, o.hiddenDim, 3, { padding: 1, bias: false });
    this.output_norm = new GroupNorm(scope.pp('output_norm'), o.groups, o.hiddenDim, NORM_EPS);
  }

  /** skip [B, H, W, C] and the coarser level's output upsampled to it [B, H, W, D] → [B, H, W, D]. */
  forward(skip: tf.Tensor4D, coarser: tf.Tensor4D): tf.Tensor4D {
    const lateral = this.lateral_norm.forward(this.lateral_conv.forward(skip)); // [B, H, W, D]
    return tf.relu(this.output_norm.forward(this.output_conv.forward(tf.add(lateral, coarser) as tf.Tensor4D)));
  }
}

/**
 * The phrase states of all levels attend to each other: one self-attention over the L·P states of
 * a sample (padding phrases masked as keys at every level), residual + LayerNorm as the per-level
 * attention. `cross_level.<r>.{attention, norm}` in the checkpoint.
 */
export class CrossLevelPhraseAttention {
  readonly attention: CrossAttention;
  readonly norm: LayerNorm;

  constructor(scope: WeightScope, hiddenDim: number, heads: number) {
    this.attention = new CrossAttention(scope.pp('attention'), hiddenDim, heads);
    this.norm = new LayerNorm(scope.pp('norm'), hiddenDim, NORM_EPS);
  }

  /** L phrase states [B, P, D] with the phrase mask [B, P] → L updated states [B, P, D]. */
  forward(states: readonly tf.Tensor3D[], mask: tf.Tensor2D): tf.Tensor3D[] {
    const [, p] = mask.shape;
    const all = tf.concat([...states], 1) as tf.Tensor3D; // [B, L·P, D]
    const keys = tf.concat(
      states.map(() => mask),
      1,
    ) as tf.Tensor2D; // [B, L·P]
    const out = this.norm.forward(tf.add(all, this.attention.forward(all, all, keys))) as tf.Tensor3D; // [B, L·P, D]
    return states.map((_, l) => tf.slice(out, [0, l * p, 0], [-1, p, -1]) as tf.Tensor3D); // [B, P, D] each
  }
}
