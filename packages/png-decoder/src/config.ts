import { check, isNonNegativeInt, isPositiveInt, resolveConfig } from '@png/core';

/**
 * Configuration of PngDecoder (DESIGN.md §1, part 5), Mask2Former's MultiScaleMaskedTransformerDecoder
 * with phrases as queries. Keys are the `config.json` keys on disk.
 */
export interface PngDecoderConfig {
  /** Width of the queries (= the fused phrases) and of the attention layers (Mask2Former: 256). */
  hidden_dim: number;
  /** Decoder layers (each: masked cross-attention → self-attention → FFN). DESIGN.md: 6. */
  num_layers: number;
  /** Attention heads; must divide hidden_dim. */
  num_heads: number;
  /** FFN hidden width. Mask2Former uses 2048 for 100 queries over COCO; 1024 here keeps the decoder light for ≤ 30 phrases. */
  dim_feedforward: number;
  /** Pre-norm layers (`normalize_before`); Mask2Former's default is post-norm. */
  pre_norm: boolean;
  /** Width of maskFeatures and of the mask embedding (3-layer MLP output). */
  mask_dim: number;
  /** Memory levels used round-robin by the layers: the first (coarsest) `num_feature_levels` pixel levels. */
  num_feature_levels: number;
  /** Channels of the incoming pixel levels; a 1×1 `input_proj.<l>` is built when it differs from hidden_dim. */
  in_channels: number;
  /** Upper bound on phrases per narrative (forward rejects more). */
  max_phrases: number;
  /**
   * Query positional embedding. Mask2Former learns one per query slot; phrases have no fixed slot,
   * so `'linear'` (default) derives it from the input phrases (`query_pos_proj`, computed once and
   * kept fixed across layers as Mask2Former's query_embed is); `'none'` uses no query position.
   */
  query_pos: 'linear' | 'none';
  /** Masked cross-attention (Mask2Former). `false` is plain cross-attention (the ablation). */
  mask_attention: boolean;
  /**
   * Positions in the mask product. Mask2Former's masks are query · per-pixel features, which hold
   * no position beyond what convolutions infer, so a query can only pick pixels by what they look
   * like: two instances that look alike get one mask. `'sine'` adds PositionEmbeddingSine of the
   * mask-feature grid (at mask_dim) to maskFeatures first, so a query can also pick by where (as
   * CondInst's and SOLO's mask heads read coordinates). `'none'` (default) is Mask2Former's.
   */
  mask_positions: 'none' | 'sine';
  /**
   * A box per query and layer: DETR's `bbox_embed` (3-layer MLP → σ → normalised cx, cy, w, h,
   * one head shared by every layer), trained with DETR's L1 + GIoU box loss against each phrase's
   * mask box (MaskDINO predicts boxes beside masks the same way; the loss: @png/png-decoder's boxLoss). It makes every query say *where*
   * its object is, which a mask loss asks only through pixels: look-alike twins differ in nothing
   * else. `false` (default) is Mask2Former's, which has no boxes.
   */
  box_head: boolean;
}

export const DEFAULT_PNG_DECODER_CONFIG: Readonly<PngDecoderConfig> = Object.freeze({
  hidden_dim: 256,
  num_layers: 6,
  num_heads: 8,
  dim_feedforward: 1024,
  pre_norm: false,
  mask_dim: 256,
  num_feature_levels: 3,
  in_channels: 256,
  max_phrases: 30,
  query_pos: 'linear',
  mask_attention: true,
  mask_positions: 'none',
  box_head: false,
});

const NAME = 'PngDecoderConfig';

/** Merges `user` over DEFAULT_PNG_DECODER_CONFIG and validates it (throws `Error in PngDecoderConfig.<field>: …`). */
export function resolvePngDecoderConfig(user: Partial<PngDecoderConfig> | Record<string, unknown> = {}): Readonly<PngDecoderConfig> {
  return resolveConfig<PngDecoderConfig>(NAME, DEFAULT_PNG_DECODER_CONFIG as PngDecoderConfig, user, (c) => {
    // PositionEmbeddingSine splits hidden_dim into y and x halves of interleaved sin/cos pairs.
    check(isPositiveInt(c.hidden_dim) && c.hidden_dim % 4 === 0, NAME, 'hidden_dim', 'a positive multiple of 4 (sine position encoding)', c.hidden_dim);
    check(isNonNegativeInt(c.num_layers), NAME, 'num_layers', 'a non-negative integer', c.num_layers);
    check(isPositiveInt(c.num_heads) && c.hidden_dim % c.num_heads === 0, NAME, 'num_heads', `a divisor of hidden_dim (${c.hidden_dim})`, c.num_heads);
    check(isPositiveInt(c.dim_feedforward), NAME, 'dim_feedforward', 'a positive integer', c.dim_feedforward);
    check(isPositiveInt(c.mask_dim), NAME, 'mask_dim', 'a positive integer', c.mask_dim);
    check(isPositiveInt(c.num_feature_levels), NAME, 'num_feature_levels', 'a positive integer', c.num_feature_levels);
    check(isPositiveInt(c.in_channels), NAME, 'in_channels', 'a positive integer', c.in_channels);
    check(isPositiveInt(c.max_phrases), NAME, 'max_phrases', 'a positive integer', c.max_phrases);
    check(c.query_pos === 'linear' || c.query_pos === 'none', NAME, 'query_pos', "'linear' or 'none'", c.query_pos);
    check(c.mask_positions === 'none' || c.mask_positions === 'sine', NAME, 'mask_positions', "'none' or 'sine'", c.mask_positions);
    if (c.mask_positions === 'sine') check(c.mask_dim % 2 === 0, NAME, 'mask_dim', "an even number with mask_positions 'sine' (y and x halves)", c.mask_dim);
  });
}
