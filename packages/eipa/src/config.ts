import { check, isFiniteNumber, isNonNegativeInt, isPositiveInt, resolveConfig } from '@png/core';

/**
 * How an extract's or inject's update is gated: one tanh gate (GLIGEN's α), a tanh gate per
 * channel (ViT-Adapter's injector γ, which is per channel and linear), or none (ViT-Adapter's
 * extractor). An ungated update changes the UNet from the first step.
 */
export type EipaGate = 'scalar' | 'per_channel' | 'none';
const GATES: readonly EipaGate[] = ['scalar', 'per_channel', 'none'];

/**
 * Where each adapted transformer block's inject update enters the UNet stream: after the block
 * (image tokens ← phrases, a gated cross-attention), or after its self-attention, before its
 * cross-attention, as GLIGEN's gated self-attention over [image tokens; phrase tokens] does
 * (diffusers' BasicTransformerBlock `fuser`).
 */
export type EipaInjectPosition = 'after_block' | 'after_self_attention';
const INJECT_POSITIONS: readonly EipaInjectPosition[] = ['after_block', 'after_self_attention'];

/**
 * Where an image token is, as EIPA's attention sees it: nowhere (content only, the UNet's own
 * transformer blocks have no positions), or DETR's / Mask2Former's PositionEmbeddingSine of the
 * block's token grid, at the block's width, added to the normalised image tokens (see
 * EipaConfig.position_encoding).
 */
export type EipaPositionEncoding = 'none' | 'sine';
const POSITION_ENCODINGS: readonly EipaPositionEncoding[] = ['none', 'sine'];

/**
 * EIPA's hyper-parameters, as saved in an adapter's config.json. Every choice the paper may have
 * made differently is a field, so its ablations run by config alone; static prompting (the
 * baseline) is `{extract: false, inject: false, dynamic_prompt: false}`.
 */
export interface EipaConfig {
  /** Transformer blocks to adapt (diffusers paths); null = every cross-attention transformer block. */
  readonly block_paths: readonly string[] | null;
  /** Width of the adapter's attention (the bottleneck between down and up projections). */
  readonly bottleneck_dim: number;
  readonly num_heads: number;
  /** Phrases attend to the block's image tokens and update the phrase state. */
  readonly extract: boolean;
  /** Image tokens attend to the updated phrases; added to the UNet stream through a gate. */
  readonly inject: boolean;
  /** Each block's cross-attention reads the current phrase state instead of the initial phrases. */
  readonly dynamic_prompt: boolean;
  /** Initial value of the tanh gates (0: an untrained adapter leaves the UNet unchanged). */
  readonly gate_init: number;
  /** The extract's gate; one gate is shared by the extract's cross-attention, self-attention and FFN. */
  readonly extract_gate: EipaGate;
  /** After the extract's cross-attention, the phrases attend to each other (pre-norm residual, bottlenecked). */
  readonly extract_self_attention: boolean;
  /** Hidden width of an FFN on the phrases closing the extract (pre-norm residual, GELU; ViT-Adapter's extractor FFN); 0: none. */
  readonly extract_ffn_dim: number;
  /** The inject's gate. */
  readonly inject_gate: EipaGate;
  readonly inject_position: EipaInjectPosition;
  /**
   * Image positions in EIPA's attention. With 'sine' the extract reads tokens + positions as keys
   * and values (Mask2Former adds them to the keys only; here the values carry them too, so a
   * phrase state records where it looked, e.g. where "the red square" is), and the inject's
   * image-token queries (after self-attention: the tokens' queries, keys and values) carry them,
   * so what a token takes from the phrases can depend on where it is. ViT-Adapter's extractor and
   * injector attend at reference points and GLIGEN's grounding tokens carry boxes; both locate.
   */
  readonly position_encoding: EipaPositionEncoding;
  /** LayerNorm epsilon of the adapter's input norms. */
  readonly norm_eps: number;
}

export const DEFAULT_EIPA_CONFIG: EipaConfig = Object.freeze({
  block_paths: null,
  bottleneck_dim: 64,
  num_heads: 8,
  extract: true,
  inject: true,
  dynamic_prompt: true,
  gate_init: 0,
  extract_gate: 'scalar',
  extract_self_attention: false,
  extract_ffn_dim: 0,
  inject_gate: 'scalar',
  inject_position: 'after_block',
  position_encoding: 'none',
  norm_eps: 1e-5,
});

/** Fills defaults and validates, before any weight exists. */
export function resolveEipaConfig(user: Partial<EipaConfig> | Record<string, unknown> = {}): EipaConfig {
  return resolveConfig('EipaConfig', DEFAULT_EIPA_CONFIG, user, (c) => {
    check(isPositiveInt(c.bottleneck_dim), 'EipaConfig', 'bottleneck_dim', 'a positive integer', c.bottleneck_dim);
    check(
      isPositiveInt(c.num_heads) && c.bottleneck_dim % c.num_heads === 0,
      'EipaConfig',
      'num_heads',
      `a divisor of bottleneck_dim (${c.bottleneck_dim})`,
      c.num_heads,
    );
    check(isFiniteNumber(c.gate_init), 'EipaConfig', 'gate_init', 'a finite number', c.gate_init);
    check(GATES.includes(c.extract_gate), 'EipaConfig', 'extract_gate', `one of ${GATES.map((g) => `'${g}'`).join(', ')}`, c.extract_gate);
    check(GATES.includes(c.inject_gate), 'EipaConfig', 'inject_gate', `one of ${GATES.map((g) => `'${g}'`).join(', ')}`, c.inject_gate);
    check(isNonNegativeInt(c.extract_ffn_dim), 'EipaConfig', 'extract_ffn_dim', 'an integer ≥ 0 (0: no FFN)', c.extract_ffn_dim);
    check(
      INJECT_POSITIONS.includes(c.inject_position),
      'EipaConfig',
      'inject_position',
      `one of ${INJECT_POSITIONS.map((p) => `'${p}'`).join(', ')}`,
      c.inject_position,
    );
    check(
      POSITION_ENCODINGS.includes(c.position_encoding),
      'EipaConfig',
      'position_encoding',
      `one of ${POSITION_ENCODINGS.map((p) => `'${p}'`).join(', ')}`,
      c.position_encoding,
    );
    check(isFiniteNumber(c.norm_eps) && c.norm_eps > 0, 'EipaConfig', 'norm_eps', 'a positive number', c.norm_eps);
    check(
      c.block_paths === null || (Array.isArray(c.block_paths) && c.block_paths.length > 0 && c.block_paths.every((p) => typeof p === 'string')),
      'EipaConfig',
      'block_paths',
      'null or a non-empty list of transformer block paths',
      c.block_paths,
    );
  });
}
