import type * as tf from '@tensorflow/tfjs-core';

// Tensor-holding types are `type` aliases, not interfaces, so they count as tf.TensorContainer
// (tf.tidy can return them and tf.dispose walks them).

/** Static description of one feature level, known before any tensor exists (cf. detectron2 ShapeSpec). */
export interface ShapeSpec {
  readonly channels: number;
  /** Input pixels per feature pixel, e.g. 8/16/32/64 for SD at 512 px. */
  readonly stride: number;
}

/** One level of image features. Every 4-D tensor in @png is NHWC. */
export type FeatureMap = {
  readonly tensor: tf.Tensor4D; // [B, H, W, C]
  readonly stride: number;
  /** Source module path, e.g. 'up_blocks.1'. */
  readonly name?: string;
};

/** Feature levels, sorted by decreasing stride (coarsest first, the UNet up path order). */
export type FeaturePyramid = readonly FeatureMap[];

/** CLIP text-encoder output for a batch of captions. */
export type TextEncoding = {
  readonly hiddenStates: tf.Tensor3D; // [B, L, D]
  readonly attentionMask: tf.Tensor2D; // [B, L], 1 = real token
};

/** Phrase embeddings for a batch of narratives: the PNG queries. */
export type PhraseFeatures = {
  readonly tensor: tf.Tensor3D; // [B, P, D]
  readonly mask: tf.Tensor2D; // [B, P], 1 = real phrase, 0 = padding
  /** Per phrase, the mean state of the other tokens of its sentence, for a model that reads the clause around each phrase (else absent). */
  readonly sentence?: tf.Tensor3D; // [B, P, D]
  /** The captions' token states the phrases were pooled from, for a model that reads the whole caption (else absent). */
  readonly caption?: CaptionTokens;
};

/**
 * Captions' token states as the frozen UNet's cross-attention reads a prompt: each encoder window
 * bos…eos and CLIP's padding, a narrative's windows one after another.
 */
export type CaptionTokens = {
  readonly tensor: tf.Tensor3D; // [B, T, D]
  readonly mask: tf.Tensor2D; // [B, T], 1 = a position of a real window (padding tokens included), 0 = an absent window
  /** Per phrase of the PhraseFeatures, the first and the last row of `tensor` its tokens take (0, 0 for padding phrases). */
  readonly spans: tf.Tensor3D; // [B, P, 2]
};

/** Per-phrase mask logits, NHWC like every 4-D tensor. */
export type MaskLogits = {
  readonly tensor: tf.Tensor4D; // [B, H, W, P]
  readonly stride: number;
};

/** Something that owns tensors and frees them. */
export interface Disposable {
  dispose(): void;
}
