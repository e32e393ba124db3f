import { ConfigError, check, isActivationName, isFiniteNumber, isNonNegativeInt, isPositiveInt, type ActivationName } from '@png/core';

/** transformers `CLIPTextConfig`, with the snake_case keys of its `config.json`. Dropouts are not kept (inference only). */
export interface CLIPTextConfig {
  readonly vocab_size: number;
  readonly hidden_size: number;
  readonly intermediate_size: number;
  /** Width of CLIPModel's text projection; CLIPTextModel does not use it. */
  readonly projection_dim?: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  readonly max_position_embeddings: number;
  readonly hidden_act: ActivationName;
  readonly layer_norm_eps: number;
  readonly bos_token_id: number;
  /** 2 marks a legacy config: the pooled token is then the one with the largest id (see CLIPTextModel). */
  readonly eos_token_id: number;
  readonly pad_token_id: number;
}

/** transformers' `CLIPTextConfig()` defaults, used for keys a config.json leaves out. */
export const DEFAULT_CLIP_TEXT_CONFIG: CLIPTextConfig = Object.freeze({
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  bos_token_id: 49406,
  eos_token_id: 49407,
  pad_token_id: 1,
});

/** CLIP ViT-L/14's text encoder as Stable Diffusion v1.5 ships it (`text_encoder/config.json`). */
export const CLIP_VIT_L14_TEXT_CONFIG: CLIPTextConfig = Object.freeze({
  vocab_size: 49408,
  hidden_size: 768,
  intermediate_size: 3072,
  projection_dim: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  bos_token_id: 0,
  eos_token_id: 2,
  pad_token_id: 1,
});

const NAME = 'CLIPTextConfig';

/**
 * Reads and validates a text-encoder `config.json` (a CLIPModel config's `text_config` too).
 * Missing keys take transformers' defaults; other keys (dropouts, `architectures`, …) are ignored.
 * Throws `Error in CLIPTextConfig.<key>: expected …, got …`, prefixed with `file` when given.
 */
export function clipTextConfigFromJson(json: Readonly<Record<string, unknown>>, file?: string): CLIPTextConfig {
  try {
    let source = json;
    if (json.model_type === 'clip') {
      check(!!json.text_config && typeof json.text_config === 'object', NAME, 'text_config', 'an object (this is a CLIPModel config)', json.text_config);
      source = json.text_config as Record<string, unknown>;
    }
    const value = (key: keyof CLIPTextConfig): unknown => source[key] ?? DEFAULT_CLIP_TEXT_CONFIG[key];
    for (const key of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'max_position_embeddings'] as const) {
      check(isPositiveInt(value(key)), NAME, key, 'a positive integer', value(key));
    }
    const hidden = value('hidden_size') as number;
    check(
      hidden % (value('num_attention_heads') as number) === 0,
      NAME,
      'num_attention_heads',
      `a divisor of hidden_size (${hidden})`,
      value('num_attention_heads'),
    );
    check(isPositiveInt(value('projection_dim')), NAME, 'projection_dim', 'a positive integer', value('projection_dim'));
    check(
      isActivationName(value('hidden_act')),
      NAME,
      'hidden_act',
      "a supported activation ('quick_gelu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu', 'silu')",
      value('hidden_act'),
    );
    const eps = value('layer_norm_eps');
    check(isFiniteNumber(eps) && eps > 0, NAME, 'layer_norm_eps', 'a positive number', eps);
    for (const key of ['bos_token_id', 'eos_token_id', 'pad_token_id'] as const) {
      check(isNonNegativeInt(value(key)), NAME, key, 'a non-negative integer', value(key));
    }
    const keys = Object.keys(DEFAULT_CLIP_TEXT_CONFIG) as Array<keyof CLIPTextConfig>;
    return Object.freeze(Object.fromEntries(keys.map((k) => [k, value(k)]))) as unknown as CLIPTextConfig;
  } catch (e) {
    if (file && e instanceof ConfigError) e.message = `${file}: ${e.message}`;
    throw e;
  }
}
