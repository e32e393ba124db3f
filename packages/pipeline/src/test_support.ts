/** Shared by the PngGrounder tests: small trainable parts and two narratives over a 2-image batch. */
import type { PngGrounderConfig } from './png_grounder';
import type { Narrative } from '@png/diffusion-backbone';

/** Small trainable parts, so the tests train in seconds (override fields with a spread). */
export const SMALL_GROUNDER_CONFIG = {
  eipa: { bottleneck_dim: 16, num_heads: 4, gate_init: 0 },
  mlma: { hidden_dim: 32, num_heads: 4, mask_dim: 32, norm_groups: 8 },
  decoder: { num_layers: 2, num_heads: 4, dim_feedforward: 64 },
  max_phrases: 4,
} satisfies Partial<PngGrounderConfig>;

/** A random-init UNet this small, whose cross_attention_dim (32) matches the tiny-sd fixture's text encoder. */
export const TINY_UNET_CONFIG = {
  block_out_channels: [8, 16],
  down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'],
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
  layers_per_block: 1,
  attention_head_dim: 2,
  norm_num_groups: 4,
  cross_attention_dim: 32,
};

/** Two narratives with 2 and 3 phrases (character spans). */
export const TEST_NARRATIVES: Narrative[] = [
  {
    caption: 'two red squares on the grass',
    phrases: [
      [0, 15],
      [19, 28],
    ],
  },
  {
    caption: 'a circle above a blue square and the sky',
    phrases: [
      [0, 8],
      [15, 28],
      [33, 40],
    ],
  },
];
