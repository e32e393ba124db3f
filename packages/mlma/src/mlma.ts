// MultiLevelMutualAggregation: DESIGN.md §1 part 4 (Li et al., ACM MM 2024, "MLMA"), reconstructed.
// Per level: image (1×1 conv + GroupNorm) and phrases (Linear + LayerNorm) are projected to
// hidden_dim, then fused reciprocally (image←phrase, phrase←image cross-attention; `rounds` times,
// optionally with the phrase states of all levels attending to each other after each round). Across levels:
// pixels go top-down as in Mask2Former's pixel-decoder FPN (out_l = ReLU(GN(conv3×3(x_l + up(out_{l−1}))))),
// phrases are combined by learned level weights. Optional skip levels (finer maps, e.g. the frozen
// VAE encoder's) continue the top-down path with a lateral conv only, as Mask2Former's pixel decoder
// joins its stride-4 map. maskFeatures = 1×1 conv of the finest level (the last skip level if any).
import * as tf from '@tensorflow/tfjs-core';
import {
  Conv2d,
  Linear,
  ParameterModule,
  WeightScope,
  openModule,
  openModuleFiles,
  resize,
  saveModule,
  type FeatureMap,
  type FeaturePyramid,
  type ModuleFiles,
  type PhraseFeatures,
  type ShapeSpec,
} from '@png/core';
import { levelStrides, resolveMlmaConfig, skipStrides, type MlmaConfig } from './config';
import { CrossLevelPhraseAttention, MlmaLevel, MlmaSkipLevel } from './fusion_block';

/** Inputs of MultiLevelMutualAggregation.forward. The module never disposes them. */
export interface MlmaInputs {
  /** Image levels, coarsest first, NHWC [B, H_l, W_l, image_channels[l]], strides as configured (e.g. `FeatureTaps.pyramid`). */
  readonly images: FeaturePyramid;
  /**
   * The phrase state at each level, [B, P, phrase_dim] (e.g. `EipaAttachment.phraseStates`), or
   * one PhraseFeatures used at every level (static prompting). Every level has the same phrases:
   * the mask ([B, P], 1 = real phrase) of the first is the phrase mask.
   */
  readonly phrases: PhraseFeatures | readonly PhraseFeatures[];
  /** Skip levels, coarsest first, NHWC [B, H_s, W_s, skip_channels[s]] at skip_strides; required when the config has any. */
  readonly skips?: readonly FeatureMap[];
}

/** Outputs of MultiLevelMutualAggregation.forward; the caller owns (and disposes) every tensor. */
export type MlmaOutput = {
  /** Fused image levels [B, H_l, W_l, hidden_dim], same strides as the input, coarsest first. */
  readonly pixels: FeatureMap[];
  /** The finest fused level (the last skip level if any) through a 1×1 conv: [B, H_finest, W_finest, mask_dim]. */
  readonly maskFeatures: tf.Tensor4D;
  /** Fused phrases [B, P, hidden_dim]; padding rows are exactly 0. */
  readonly phrases: tf.Tensor3D;
  /** A float32 copy of the input phrase mask [B, P] (so the whole output can be disposed at once). */
  readonly phraseMask: tf.Tensor2D;
};

/**
 * Multi-Level Mutual Aggregation. Build with `create(config, {seed})` or `fromPretrained(dir)`;
 * all weights are trainable tf.Variables. Checkpoint keys: `levels.<i>.{image_proj, image_proj_norm,
 * phrase_proj, phrase_proj_norm, image_from_phrase.{to_q,to_k,to_v,to_out}, image_from_phrase_norm,
 * phrase_from_image.*, phrase_from_image_norm, output_conv, output_norm}`, `phrase_level_weights`
 * or `phrase_gate`, `skip_levels.<i>.{lateral_conv, lateral_norm, output_conv, output_norm}` (with
 * skip_channels), `mask_features`; with `rounds` > 1 `levels.<i>.rounds.<r>.*` (the reciprocal
 * attention and norms of round r), with `cross_level` `cross_level.<r>.{attention, norm}`.
 */
export class MultiLevelMutualAggregation extends ParameterModule {
  readonly config: Readonly<MlmaConfig>;
  readonly levels: MlmaLevel[] = [];
  /** [L] logits of the per-level phrase weights (`phrase_fusion: 'softmax'`). */
  readonly phrase_level_weights?: tf.Tensor1D;
  /** Per-phrase level score (`phrase_fusion: 'gate'`). */
  readonly phrase_gate?: Linear;
  /** One per skip_channels entry, coarsest first. */
  readonly skip_levels: MlmaSkipLevel[] = [];
  readonly mask_features: Conv2d;
  /** Per round, the attention of the phrase states of all levels to each other (`cross_level`; else empty). */
  readonly cross_level: CrossLevelPhraseAttention[] = [];
  private readonly strides: number[];
  private readonly skipStrides: number[];

  private constructor(scope: WeightScope, config: Readonly<MlmaConfig>) {
    super();
    const c = config;
    this.config = c;
    this.strides = levelStrides(c);
    this.skipStrides = skipStrides(c);
    c.image_channels.forEach((ch, i) => {
      this.levels.push(
        new MlmaLevel(scope.pp('levels').pp(i), {
          imageChannels: ch,
          phraseDim: c.phrase_dim,
          hiddenDim: c.hidden_dim,
          heads: c.num_heads,
          groups: c.norm_groups,
          mutual: c.mutual,
          rounds: c.rounds,
        }),
      );
    });
    if (c.phrase_fusion === 'softmax') {
      this.phrase_level_weights = scope.param('phrase_level_weights', [c.image_channels.length], { init: 'zeros' }) as tf.Tensor1D;
    } else {
      this.phrase_gate = new Linear(scope.pp('phrase_gate'), c.hidden_dim, 1);
    }
    for (const [i, ch] of c.skip_channels.entries())
      this.skip_levels.push(new MlmaSkipLevel(scope.pp('skip_levels').pp(i), { channels: ch, hiddenDim: c.hidden_dim, groups: c.norm_groups }));
    this.mask_features = new Conv2d(scope.pp('mask_features'), c.hidden_dim, c.mask_dim, 1);
    if (c.cross_level)
      for (let r = 0; r < c.rounds; r++) this.cross_level.push(new CrossLevelPhraseAttention(scope.pp('cross_level').pp(r), c.hidden_dim, c.num_heads));
  }

  /** A fresh module (seeded torch-default init; trainable). The config is validated before any weight exists. */
  static create(config: Partial<MlmaConfig> | Record<string, unknown>, options: { seed?: number } = {}): MultiLevelMutualAggregation {
    const resolved = resolveMlmaConfig(config);
    return MultiLevelMutualAggregation.build(WeightScope.fresh({ seed: options.seed ?? 0, trainable: true }), resolved);
  }

  /** Loads a folder written by `save` (config.json + model.safetensors); strict about keys and shapes. */
  static async fromPretrained(dir: string): Promise<MultiLevelMutualAggregation> {
    const { config, source } = await openModule(dir);
    try {
      const resolved = resolveMlmaConfig(config);
      return MultiLevelMutualAggregation.build(WeightScope.fromSource(source, { trainable: true }), resolved);
    } finally {
      source.close();
    }
  }

  /** As fromPretrained, from the contents of the folder's files (browsers); `name` (where they came from) prefixes errors. */
  static fromFiles(files: ModuleFiles, name = 'mlma'): MultiLevelMutualAggregation {
    const { config, source } = openModuleFiles(files, name);
    return MultiLevelMutualAggregation.build(WeightScope.fromSource(source, { trainable: true }), resolveMlmaConfig(config));
  }

  private static build(scope: WeightScope, config: Readonly<MlmaConfig>): MultiLevelMutualAggregation {
    const { module, params } = scope.build((s) => new MultiLevelMutualAggregation(s, config));
    module.adopt(params);
    return module;
  }

  /** Writes `<dir>/config.json` and `<dir>/model.safetensors` (torch layout, F32). */
  async save(dir: string): Promise<void> {
    await saveModule(dir, this.config, this.parameters, { format: 'pt', module: 'MultiLevelMutualAggregation' });
  }

  /** Channels and stride of each output pixel level, coarsest first (known before any tensor exists). */
  outputShape(): ShapeSpec[] {
    return this.strides.map((stride) => ({ channels: this.config.hidden_dim, stride }));
  }

  /** Channels and stride of `maskFeatures`: the finest skip level's stride, or the finest image level's. */
  maskFeaturesShape(): ShapeSpec {
    const strides = [...this.strides, ...this.skipStrides];
    return { channels: this.config.mask_dim, stride: strides[strides.length - 1] };
  }

  /**
   * Fuses image levels and phrase states. Padding phrases influence nothing real: they are masked
   * as attention keys, every other op is per phrase, and their fused rows are zeroed. Runs in
   * tf.tidy; the caller owns the returned tensors; inputs are not disposed.
   */
  forward(inputs: MlmaInputs): MlmaOutput {
    this.assertAlive();
    const phraseList = this.checkInputs(inputs);
    return tf.tidy('MultiLevelMutualAggregation.forward', () => {
      const c = this.config;
      const mask = tf.cast(phraseList[0].mask, 'float32') as tf.Tensor2D; // [B, P]
      const [b, p] = mask.shape;
      const hasReal = tf.reshape(tf.max(mask, 1), [b, 1, 1]); // [B, 1, 1]

      // 1. per level: projections, then rounds of reciprocal attention (each followed by the cross-level phrase attention, if any)
      let perLevel = this.levels.map((level, i) => level.project(inputs.images[i].tensor, phraseList[i].tensor));
      for (let r = 0; r < c.rounds; r++) {
        perLevel = perLevel.map((s, i) => this.levels[i].rounds[r]?.forward(s.image, s.phrases, mask, hasReal) ?? s);
        const across = this.cross_level[r]?.forward(
          perLevel.map((s) => s.phrases),
          mask,
        );
        if (across) perLevel = perLevel.map((s, i) => ({ image: s.image, phrases: across[i] }));
      }

      // 2. pixels: top-down (coarsest first), Mask2Former's FPN: out_l = conv(x_l + up(out_{l−1}))
      const pixels: FeatureMap[] = [];
      let prev: tf.Tensor4D | undefined;
      for (const [i, { image }] of perLevel.entries()) {
        const [, h, w] = image.shape;
        const x = prev ? (tf.add(image, resize(prev, [h, w], c.upsample_mode)) as tf.Tensor4D) : image;
        prev = this.levels[i].output(x);
        pixels.push({ tensor: prev, stride: this.strides[i] });
      }
      if (!prev) throw new Error('MultiLevelMutualAggregation: no image level; config image_channels needs at least one');
      // skip levels continue the top-down path (no phrase attention): they only refine maskFeatures
      const skips = inputs.skips ?? []; // as many as skip_levels (checked above)
      for (const [i, level] of this.skip_levels.entries()) {
        const skip = skips[i].tensor; // [B, H_s, W_s, skip_channels[i]]
        prev = level.forward(skip, resize(prev, [skip.shape[1], skip.shape[2]], c.upsample_mode)); // [B, H_s, W_s, D]
      }
      const maskFeatures = this.mask_features.forward(prev); // [B, H_finest, W_finest, mask_dim]

      // 3. phrases: weighted sum over levels
      const stacked = tf.stack(
        perLevel.map((l) => l.phrases),
        2,
      ); // [B, P, L, D]
      let weights: tf.Tensor; // broadcastable to [B, P, L, 1]
      if (this.phrase_level_weights) {
        weights = tf.reshape(tf.softmax(this.phrase_level_weights), [1, 1, this.levels.length, 1]); // [1, 1, L, 1]
      } else {
        if (!this.phrase_gate) throw new Error('MultiLevelMutualAggregation: built with neither phrase_level_weights nor phrase_gate');
        const scores = tf.reshape(this.phrase_gate.forward(stacked), [b, p, this.levels.length]); // [B, P, L]
        weights = tf.expandDims(tf.softmax(scores, -1), 3); // [B, P, L, 1]
      }
      const fused = tf.sum(tf.mul(stacked, weights), 2); // [B, P, D]
      const phrases = tf.mul(fused, tf.expandDims(mask, 2)) as tf.Tensor3D; // padding rows → 0

      return { pixels, maskFeatures, phrases, phraseMask: mask.clone() };
    });
  }

  /** The phrase features of every level, checked against the config and the image levels. */
  private checkInputs(inputs: MlmaInputs): readonly PhraseFeatures[] {
    const c = this.config;
    const n = c.image_channels.length;
    const where = 'MultiLevelMutualAggregation.forward';
    const { images } = inputs;
    if (images.length !== n) throw new Error(`${where}: expected ${n} image levels (coarsest first), got ${images.length}`);
    const phraseList: readonly PhraseFeatures[] = 'tensor' in inputs.phrases ? Array<PhraseFeatures>(n).fill(inputs.phrases) : inputs.phrases;
    if (phraseList.length !== n) throw new Error(`${where}: expected ${n} phrase features (one per level) or one, got ${phraseList.length}`);
    const phraseMask = phraseList[0].mask;
    if (phraseMask.rank !== 2) throw new Error(`${where}: phrases[0].mask must be [B, P], got [${phraseMask.shape}]`);
    const [b, p] = phraseMask.shape;
    images.forEach((img, i) => {
      const s = img.tensor.shape;
      if (img.tensor.rank !== 4 || s[0] !== b || s[3] !== c.image_channels[i]) {
        throw new Error(`${where}: images[${i}] must be NHWC [${b}, H, W, ${c.image_channels[i]}], got [${s}]`);
      }
      if (img.stride !== this.strides[i])
        throw new Error(`${where}: images[${i}] has stride ${img.stride}, expected ${this.strides[i]} (config image_strides)`);
    });
    const skips = inputs.skips ?? [];
    if (skips.length !== c.skip_channels.length) {
      throw new Error(
        `${where}: expected ${c.skip_channels.length} skip levels (config skip_channels [${c.skip_channels}], coarsest first), got ${skips.length}`,
      );
    }
    skips.forEach((skip, i) => {
      const s = skip.tensor.shape;
      if (skip.tensor.rank !== 4 || s[0] !== b || s[3] !== c.skip_channels[i]) {
        throw new Error(`${where}: skips[${i}] must be NHWC [${b}, H, W, ${c.skip_channels[i]}], got [${s}]`);
      }
      if (skip.stride !== this.skipStrides[i])
        throw new Error(`${where}: skips[${i}] has stride ${skip.stride}, expected ${this.skipStrides[i]} (config skip_strides)`);
    });
    phraseList.forEach(({ tensor: t, mask }, i) => {
      if (t.rank !== 3 || t.shape[0] !== b || t.shape[1] !== p || t.shape[2] !== c.phrase_dim) {
        throw new Error(
          `${where}: phrases[${i}].tensor must be [${b}, ${p}, ${c.phrase_dim}] (batch and phrases of the phrase mask [${phraseMask.shape}]), got [${t.shape}]`,
        );
      }
      if (mask.rank !== 2 || mask.shape[0] !== b || mask.shape[1] !== p)
        throw new Error(`${where}: phrases[${i}].mask is [${mask.shape}]; every level has the phrases of phrases[0] (mask [${phraseMask.shape}])`);
    });
    return phraseList;
  }
}
