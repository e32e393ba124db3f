import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '@png/core';
import { sharedFixturesDir } from '@png/core/testing';
import { DEFAULT_CLIP_TEXT_CONFIG, CLIP_VIT_L14_TEXT_CONFIG, clipTextConfigFromJson } from './configuration_clip';

const FIXTURE_CONFIG = path.join(sharedFixturesDir(), 'tiny-sd', 'text_encoder', 'config.json');

describe('clipTextConfigFromJson', () => {
  it('reads the fixture config.json', () => {
    const config = clipTextConfigFromJson(JSON.parse(fs.readFileSync(FIXTURE_CONFIG, 'utf8')));
    expect(config).toEqual({
      vocab_size: 1000,
      hidden_size: 32,
      intermediate_size: 37,
      projection_dim: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      max_position_embeddings: 77,
      hidden_act: 'quick_gelu',
      layer_norm_eps: 1e-5,
      bos_token_id: 0,
      eos_token_id: 2,
      pad_token_id: 1,
    });
  });

  it('fills missing keys with transformers defaults and reads a CLIPModel text_config', () => {
    expect(clipTextConfigFromJson({})).toEqual(DEFAULT_CLIP_TEXT_CONFIG);
    expect(clipTextConfigFromJson({ model_type: 'clip', text_config: { ...CLIP_VIT_L14_TEXT_CONFIG } })).toEqual(CLIP_VIT_L14_TEXT_CONFIG);
    expect(clipTextConfigFromJson({ ...CLIP_VIT_L14_TEXT_CONFIG })).toEqual(CLIP_VIT_L14_TEXT_CONFIG);
  });

  it.each([
    [{ hidden_size: 32, num_attention_heads: 5 }, 'Error in CLIPTextConfig.num_attention_heads: expected a divisor of hidden_size (32), got 5'],
    [{ hidden_act: 'gelu_10' }, 'Error in CLIPTextConfig.hidden_act: expected a supported activation'],
    [{ vocab_size: 0 }, 'Error in CLIPTextConfig.vocab_size: expected a positive integer, got 0'],
    [{ max_position_embeddings: '77' }, 'Error in CLIPTextConfig.max_position_embeddings: expected a positive integer, got "77"'],
    [{ layer_norm_eps: -1 }, 'Error in CLIPTextConfig.layer_norm_eps: expected a positive number, got -1'],
    [{ eos_token_id: 1.5 }, 'Error in CLIPTextConfig.eos_token_id: expected a non-negative integer, got 1.5'],
    [{ model_type: 'clip' }, 'Error in CLIPTextConfig.text_config'],
  ])('rejects %j', (json, message) => {
    expect(() => clipTextConfigFromJson(json)).toThrow(ConfigError);
    expect(() => clipTextConfigFromJson(json)).toThrow(message);
  });

  it('names the file', () => {
    expect(() => clipTextConfigFromJson({ num_hidden_layers: -2 }, 'text_encoder/config.json')).toThrow(
      'text_encoder/config.json: Error in CLIPTextConfig.num_hidden_layers: expected a positive integer, got -2',
    );
  });
});
