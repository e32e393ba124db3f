import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { SafetensorsFile, WeightScope, serializeSafetensors, setBackend, type TensorData } from '@png/core';
import { FixtureIndex, expectClose, expectDefined, expectNoLeak, sharedFixturesDir } from '@png/core/testing';
import { CLIP_VIT_L14_TEXT_CONFIG, type CLIPTextConfig } from './configuration_clip';
import { CLIPTextModel } from './modeling_clip';

const fx = new FixtureIndex(path.join(sharedFixturesDir(), 'tiny-sd'));
const TEXT_ENCODER = path.join(fx.dir, 'text_encoder');
/** caption0, caption1, caption2, caption_long: every text/<name>.input_ids of the fixture. */
const CAPTIONS = fx
  .keys('text/')
  .filter((k) => k.endsWith('.input_ids'))
  .map((k) => k.slice('text/'.length, -'.input_ids'.length));
const ATOL = 1e-4;

const tempDirs: string[] = [];
const tempDir = () => {
  tempDirs.push(fs.mkdtempSync(path.join(os.tmpdir(), 'clip-text-')));
  return tempDirs[tempDirs.length - 1];
};
afterAll(() => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

function ids(name: string): tf.Tensor2D {
  const ref = fx.read(`text/${name}.input_ids`);
  return tf.tensor2d(ref.data as Int32Array, ref.shape as [number, number], 'int32');
}

describe.each(['cpu', 'wasm'] as const)('CLIPTextModel on %s', (backend) => {
  let model: CLIPTextModel;
  beforeAll(async () => {
    await setBackend(backend);
    model = await CLIPTextModel.fromPretrained(TEXT_ENCODER);
  });
  afterAll(() => model.dispose());

  it('has the fixture size', () => {
    expect(CAPTIONS).toEqual(['caption0', 'caption1', 'caption2', 'caption_long']);
    expect(model.numParameters()).toBe(48106);
  });

  it.each(CAPTIONS)('%s: last_hidden_state and pooler_output match transformers', async (name) => {
    const input = ids(name);
    const out = model.forward(input);
    expect(out.lastHiddenState.shape).toEqual([1, 77, 32]);
    expect(out.poolerOutput.shape).toEqual([1, 32]);
    await expectClose(out.lastHiddenState, fx.read(`text/${name}.last_hidden_state`).data, ATOL, `${name}.last_hidden_state`);
    await expectClose(out.poolerOutput, fx.read(`text/${name}.pooler_output`).data, ATOL, `${name}.pooler_output`);
    tf.dispose([input, out]);
  });

  it('caption0: hidden_states (embeddings, then each layer before final_layer_norm)', async () => {
    const input = ids('caption0');
    const out = model.forward(input, { outputHiddenStates: true });
    expect(out.hiddenStates).toHaveLength(3);
    for (let i = 0; i < 3; i++)
      await expectClose(expectDefined(out.hiddenStates, 'hiddenStates')[i], fx.read(`text/caption0.hidden_states.${i}`).data, ATOL, `hidden_states.${i}`);
    tf.dispose([input, out]);
  });

  it('pools each row of a batch at its own end-of-text token', async () => {
    const input = tf.concat(CAPTIONS.map(ids)) as tf.Tensor2D; // [4, 77]
    const out = model.forward(input);
    const pooled = (await out.poolerOutput.array()) as number[][];
    for (const [b, name] of CAPTIONS.entries()) await expectClose(pooled[b], fx.read(`text/${name}.pooler_output`).data, ATOL, `row ${b}`);
    tf.dispose([input, out]);
  });

  it('a key mask over the padding leaves the real tokens unchanged (causal attention)', async () => {
    const input = ids('caption0');
    const real = (await input.data()).indexOf(999) + 1;
    const mask = tf.tensor2d(
      Array.from({ length: 77 }, (_, i) => (i < real ? 1 : 0)),
      [1, 77],
      'int32',
    );
    const masked = model.forward(input, { attentionMask: mask });
    const head = tf.slice(masked.lastHiddenState, [0, 0, 0], [1, real, 32]);
    const ref = fx.read('text/caption0.last_hidden_state').data.slice(0, real * 32);
    await expectClose(head, ref, ATOL, 'masked real tokens');
    tf.dispose([input, mask, masked, head]);
  });

  it('forward does not leak', async () => {
    const input = ids('caption1');
    const mask = tf.ones([1, 77], 'int32') as tf.Tensor2D;
    await expectNoLeak(() => model.forward(input), 'forward');
    await expectNoLeak(() => model.forward(input, { attentionMask: mask, outputHiddenStates: true }), 'forward with mask and hidden states');
    tf.dispose([input, mask]);
  });

  it('rejects ids of the wrong rank, dtype or length', () => {
    const cases: Array<[tf.Tensor, string]> = [
      [tf.zeros([77], 'int32'), 'got int32 [77]'],
      [tf.zeros([1, 77], 'float32'), 'got float32 [1,77]'],
      [tf.zeros([1, 78], 'int32'), 'got int32 [1,78]'],
      [tf.zeros([1, 0], 'int32'), 'got int32 [1,0]'],
    ];
    for (const [bad, message] of cases) {
      expect(() => model.forward(bad as tf.Tensor2D)).toThrow('inputIds must be an int32 tensor [B, L] with 1 ≤ L ≤ 77');
      expect(() => model.forward(bad as tf.Tensor2D)).toThrow(message);
    }
    const good = tf.zeros([2, 7], 'int32') as tf.Tensor2D;
    const mask = tf.ones([1, 7]) as tf.Tensor2D;
    expect(() => model.forward(good, { attentionMask: mask })).toThrow('attentionMask must be [B, L] = [2,7] like inputIds, got [1,7]');
    tf.dispose([...cases.map((c) => c[0]), good, mask]);
  });
});

describe('CLIPTextModel loading', () => {
  beforeAll(() => setBackend('cpu'));

  it('dispose frees every weight', async () => {
    const before = tf.memory().numTensors;
    const model = await CLIPTextModel.fromPretrained(TEXT_ENCODER);
    expect(tf.memory().numTensors - before).toBe(36);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const input = tf.zeros([1, 3], 'int32') as tf.Tensor2D;
    expect(() => model.forward(input)).toThrow('disposed');
    input.dispose();
  });

  it('explains a missing, truncated or corrupt checkpoint', async () => {
    const dir = tempDir();
    fs.copyFileSync(path.join(TEXT_ENCODER, 'config.json'), path.join(dir, 'config.json'));
    await expect(CLIPTextModel.fromPretrained(dir)).rejects.toThrow(`${path.join(dir, 'model.safetensors')}: missing`);
    const bytes = fs.readFileSync(path.join(TEXT_ENCODER, 'model.safetensors'));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), bytes.subarray(0, bytes.length >> 1));
    await expect(CLIPTextModel.fromPretrained(dir)).rejects.toThrow(/model\.safetensors.*truncated/);
    const corrupt = Buffer.from(bytes);
    corrupt.fill(0x7b, 8, 40); // header bytes → '{{{…'
    fs.writeFileSync(path.join(dir, 'model.safetensors'), corrupt);
    await expect(CLIPTextModel.fromPretrained(dir)).rejects.toThrow(/model\.safetensors.*not valid UTF-8 JSON/);
    await expect(CLIPTextModel.fromPretrained(path.join(dir, 'nope'))).rejects.toThrow('no such folder');
  });

  it('ignores the position_ids buffer that older transformers wrote', async () => {
    const dir = await rewritten(
      (t) => (t['text_model.embeddings.position_ids'] = { dtype: 'I32', shape: [1, 77], data: Int32Array.from({ length: 77 }, (_, i) => i) }),
    );
    const model = await CLIPTextModel.fromPretrained(dir);
    expect(model.numParameters()).toBe(48106);
    model.dispose();
  });

  it('names the key of a mis-shaped, missing or unexpected tensor, and frees what it loaded', async () => {
    const before = tf.memory().numTensors;
    const fc1 = 'text_model.encoder.layers.1.mlp.fc1.weight';
    await expect(CLIPTextModel.fromPretrained(await rewritten((t) => (t[fc1] = { ...t[fc1], shape: [32, 37] })))).rejects.toThrow(
      `tensor '${fc1}' has shape [32,37], expected [37,32]`,
    );
    await expect(CLIPTextModel.fromPretrained(await rewritten((t) => delete t['text_model.final_layer_norm.bias']))).rejects.toThrow(
      "missing tensor 'text_model.final_layer_norm.bias'",
    );
    await expect(
      CLIPTextModel.fromPretrained(await rewritten((t) => (t['text_projection.weight'] = { dtype: 'F32', shape: [1], data: new Float32Array(1) }))),
    ).rejects.toThrow("unexpected tensors 'text_projection.weight'");
    expect(tf.memory().numTensors).toBe(before);
  });

  it('reports a bad config.json before reading weights', async () => {
    const dir = tempDir();
    const config = JSON.parse(fs.readFileSync(path.join(TEXT_ENCODER, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, num_attention_heads: 5 }));
    await expect(CLIPTextModel.fromPretrained(dir)).rejects.toThrow(
      `${dir}/config.json: Error in CLIPTextConfig.num_attention_heads: expected a divisor of hidden_size (32), got 5`,
    );
  });
});

describe('CLIPTextModel with random weights', () => {
  beforeAll(() => setBackend('cpu'));

  const config: CLIPTextConfig = {
    ...CLIP_VIT_L14_TEXT_CONFIG,
    vocab_size: 100,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 3,
    num_attention_heads: 8,
    max_position_embeddings: 16,
    hidden_act: 'gelu',
    eos_token_id: 99,
  };

  it('runs any valid config and pools at the first eos_token_id (non-legacy)', async () => {
    const model = CLIPTextModel.fromScope(WeightScope.fresh({ seed: 3 }), config);
    // embeddings 100·64 + 16·64; per layer 2 LayerNorms, 4 projections, fc1, fc2; final LayerNorm
    expect(model.numParameters()).toBe(100 * 64 + 16 * 64 + 3 * (2 * 128 + 4 * (64 * 64 + 64) + (64 * 128 + 128) + (128 * 64 + 64)) + 128);
    const input = tf.tensor2d(
      [
        [5, 6, 99, 7, 99, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
      ],
      [2, 16],
      'int32',
    );
    const out = model.forward(input, { outputHiddenStates: true });
    expect(out.lastHiddenState.shape).toEqual([2, 16, 64]);
    expect(out.poolerOutput.shape).toEqual([2, 64]);
    expect(expectDefined(out.hiddenStates, 'hiddenStates').map((h) => h.shape)).toEqual(new Array(4).fill([2, 16, 64]));
    const last = (await out.lastHiddenState.array()) as number[][][];
    const pooled = (await out.poolerOutput.array()) as number[][];
    expect(pooled[0]).toEqual(last[0][2]); // first 99
    expect(pooled[1]).toEqual(last[1][0]); // no eos: position 0, as transformers' argmax of all-false
    await expectNoLeak(() => model.forward(input), 'random-init forward');
    tf.dispose([input, out]);
    model.dispose();
  });

  it('validates the config before allocating anything', () => {
    const before = tf.memory().numTensors;
    expect(() => CLIPTextModel.fromScope(WeightScope.fresh(), { ...config, num_attention_heads: 6 })).toThrow(
      'Error in CLIPTextConfig.num_attention_heads: expected a divisor of hidden_size (64), got 6',
    );
    expect(tf.memory().numTensors).toBe(before);
  });
});

/** A temp text_encoder folder whose weights are the fixture's after `edit`. */
async function rewritten(edit: (tensors: Record<string, TensorData>) => void): Promise<string> {
  const dir = tempDir();
  fs.copyFileSync(path.join(TEXT_ENCODER, 'config.json'), path.join(dir, 'config.json'));
  const source = await SafetensorsFile.open(path.join(TEXT_ENCODER, 'model.safetensors'));
  const tensors: Record<string, TensorData> = {};
  for (const key of source.keys()) tensors[key] = { dtype: 'F32', shape: expectDefined(source.info(key), key).shape, data: source.read(key) as Float32Array };
  source.close();
  edit(tensors);
  fs.writeFileSync(path.join(dir, 'model.safetensors'), serializeSafetensors(tensors));
  return dir;
}
