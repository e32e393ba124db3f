import { check, isPositiveInt, resolveConfig } from '@png/core';

/** How the per-level phrase states are fused into one [B, P, hidden_dim] set. */
export type PhraseFusion = 'softmax' | 'gate';

/**
 * Configuration of MultiLevelMutualAggregation (DESIGN.md §1, part 4). Keys are the
 * `config.json` keys on disk.
 */
export interface MlmaConfig {
  /** Channels of each image level, coarsest first. Required. SD 1.5 up blocks: [1280, 1280, 640, 320]. */
  image_channels: number[];
  /**
   * Stride (input pixels per feature pixel) of each level, coarsest first, strictly decreasing.
   * `[]` (default) means 8·2^(L−1−i): 64/32/16/8 for four levels, the SD up-block outputs.
   */
  image_strides: number[];
  /** Width of the incoming phrase features (the text width: 768 for SD 1.x). */
  phrase_dim: number;
  /** Width of every fused image level and of the fused phrases. */
  hidden_dim: number;
  /** Heads of the image←phrase and phrase←image attentions; must divide hidden_dim. */
  num_heads: number;
  /**
   * Reciprocal attention per level (image←phrase, phrase←image). `false` is the paper's
   * "MLMA off" ablation: projection + top-down pixel fusion + phrase fusion only; the attention
   * weights are then not allocated at all.
   */
  mutual: boolean;
  /**
   * `'softmax'` (default): fused = Σ_l softmax(w)_l · phrase_l with one learned scalar per level
   * (`phrase_level_weights`, zero-initialised, i.e. the mean at start). `'gate'`: a per-phrase
   * score s_l = phrase_gate(phrase_l) (a Linear hidden→1), softmaxed over the levels.
   */
  phrase_fusion: PhraseFusion;
  /** Upsampling of the coarser fused map in the top-down path (FPN / Mask2Former use 'nearest'). */
  upsample_mode: 'nearest' | 'bilinear';
  /**
   * Channels of each skip level, coarsest first: feature maps finer than the finest image level
   * (SD's frozen VAE encoder blocks) joined into the top-down path below it by a lateral 1×1 conv
   * only, as Mask2Former's pixel decoder joins its stride-4 map: no phrase attention, they only
   * make `maskFeatures` finer. `[]` (default): none, `maskFeatures` at the finest image level.
   */
  skip_channels: number[];
  /**
   * Stride of each skip level, coarsest first, strictly decreasing and finer than the finest image
   * level. `[]` (default) means halving from it: finest/2, finest/4, …
   */
  skip_strides: number[];
  /** Width of `maskFeatures` (1×1 conv of the finest fused level: the last skip level if any). */
  mask_dim: number;
  /** GroupNorm groups of the projections and output convs; must divide hidden_dim. */
  norm_groups: number;
  /**
   * Rounds of reciprocal attention per level (default 1). Round r ≥ 1 attends again between the
   * level's image tokens and phrase states as the round before left them, with its own weights
   * (`levels.<i>.rounds.<r>.*`). More than 1 needs `mutual`.
   */
  rounds: number;
  /**
   * After each round, the phrase states of all levels attend to each other (one self-attention
   * over a sample's L·P phrase states, padding masked; residual + LayerNorm; `cross_level.<r>.*`).
   * Default false: the levels meet only in the final phrase fusion.
   */
  cross_level: boolean;
}

/** Defaults: DESIGN.md §1 ("MLMA width 256"), Mask2Former's mask_dim 256 and GroupNorm(32). */
export const DEFAULT_MLMA_CONFIG: Readonly<MlmaConfig> = Object.freeze({
  image_channels: [],
  image_strides: [],
  phrase_dim: 768,
  hidden_dim: 256,
  num_heads: 8,
  mutual: true,
  phrase_fusion: 'softmax',
  upsample_mode: 'nearest',
  skip_channels: [],
  skip_strides: [],
  mask_dim: 256,
  norm_groups: 32,
  rounds: 1,
  cross_level: false,
});

/** SD 1.5 up-block outputs (up_blocks.0..3 at strides 64/32/16/8 of the image) with CLIP ViT-L text. */
export const SD15_MLMA_CONFIG: Readonly<Partial<MlmaConfig>> = Object.freeze({ image_channels: [1280, 1280, 640, 320], phrase_dim: 768 });

const NAME = 'MlmaConfig';

/** Merges `user` over DEFAULT_MLMA_CONFIG and validates it (throws `Error in MlmaConfig.<field>: …`). */
export function resolveMlmaConfig(user: Partial<MlmaConfig> | Record<string, unknown> = {}): Readonly<MlmaConfig> {
  return resolveConfig<MlmaConfig>(NAME, DEFAULT_MLMA_CONFIG as MlmaConfig, user, (c) => {
    const ch = c.image_channels;
    check(
      Array.isArray(ch) && ch.length > 0 && ch.every(isPositiveInt),
      NAME,
      'image_channels',
      'a non-empty array of positive integers (one per level, coarsest first)',
      ch,
    );
    const st = c.image_strides;
    check(Array.isArray(st) && (st.length === 0 || st.length === ch.length), NAME, 'image_strides', `[] or one stride per level (${ch.length})`, st);
    check(
      st.every(isPositiveInt) && st.every((s, i) => i === 0 || s < st[i - 1]),
      NAME,
      'image_strides',
      'strictly decreasing positive integers (coarsest first)',
      st,
    );
    const sk = c.skip_channels;
    check(Array.isArray(sk) && sk.every(isPositiveInt), NAME, 'skip_channels', '[] or an array of positive integers (one per skip level, coarsest first)', sk);
    const ss = c.skip_strides;
    check(Array.isArray(ss) && (ss.length === 0 || ss.length === sk.length), NAME, 'skip_strides', `[] or one stride per skip level (${sk.length})`, ss);
    const strides = levelStrides(c);
    const finest = strides[strides.length - 1];
    check(
      ss.every(isPositiveInt) && ss.every((s, i) => s < (i === 0 ? finest : ss[i - 1])),
      NAME,
      'skip_strides',
      `strictly decreasing positive integers below the finest image stride (${finest})`,
      ss,
    );
    check(
      skipStrides(c).every(isPositiveInt),
      NAME,
      'skip_channels',
      `as many levels as halvings of the finest image stride (${finest}) give integer strides, or skip_strides given`,
      sk,
    );
    check(isPositiveInt(c.phrase_dim), NAME, 'phrase_dim', 'a positive integer', c.phrase_dim);
    check(isPositiveInt(c.hidden_dim), NAME, 'hidden_dim', 'a positive integer', c.hidden_dim);
    check(isPositiveInt(c.num_heads) && c.hidden_dim % c.num_heads === 0, NAME, 'num_heads', `a divisor of hidden_dim (${c.hidden_dim})`, c.num_heads);
    check(isPositiveInt(c.norm_groups) && c.hidden_dim % c.norm_groups === 0, NAME, 'norm_groups', `a divisor of hidden_dim (${c.hidden_dim})`, c.norm_groups);
    check(isPositiveInt(c.mask_dim), NAME, 'mask_dim', 'a positive integer', c.mask_dim);
    check(c.phrase_fusion === 'softmax' || c.phrase_fusion === 'gate', NAME, 'phrase_fusion', "'softmax' or 'gate'", c.phrase_fusion);
    check(c.upsample_mode === 'nearest' || c.upsample_mode === 'bilinear', NAME, 'upsample_mode', "'nearest' or 'bilinear'", c.upsample_mode);
    check(isPositiveInt(c.rounds), NAME, 'rounds', 'a positive integer', c.rounds);
    check(c.rounds === 1 || c.mutual, NAME, 'rounds', '1 when mutual is false (there is no reciprocal attention to repeat)', c.rounds);
  });
}

/** The stride of each level (coarsest first) of a resolved config. */
export function levelStrides(c: Readonly<MlmaConfig>): number[] {
  const n = c.image_channels.length;
  return c.image_strides.length ? [...c.image_strides] : c.image_channels.map((_, i) => 8 * 2 ** (n - 1 - i));
}

/** The stride of each skip level (coarsest first) of a resolved config. */
export function skipStrides(c: Readonly<MlmaConfig>): number[] {
  const strides = levelStrides(c);
  const finest = strides[strides.length - 1];
  return c.skip_strides.length ? [...c.skip_strides] : c.skip_channels.map((_, i) => finest / 2 ** (i + 1));
}
