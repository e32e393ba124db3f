import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ForwardContext, SafetensorsBytes, serializeSafetensors, setBackend } from '@png/core';
import { FixtureIndex, expectClose, expectNoLeak, nchwToNhwc, sharedFixturesDir } from '@png/core/testing';
import { UNet2DConditionModel } from './unet_2d_condition';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');
const refs = new FixtureIndex(TINY);

/** A reference as an NHWC (4-D) or as-is (tokens, vectors) tensor. */
function refTensor(key: string): tf.Tensor {
  const r = refs.read(key);
  if (r.shape.length === 4) {
    const { data, shape } = nchwToNhwc(r.data as Float32Array, r.shape);
    return tf.tensor(data, shape);
  }
  return tf.tensor(r.data, r.shape);
}

/** Records every hooked module output into context.outputs under `<path>.out`. */
function recordAll(unet: UNet2DConditionModel): () => void {
  return unet.addBlockHook(() => true, {
    postForward: (p, out, ctx) => {
      ctx.outputs[`${p}.out`] = out;
    },
  });
}

/** The skip tensors each down block adds, rebuilt from its module outputs. */
function resSampleKeys(unet: UNet2DConditionModel): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  unet.down_blocks.forEach((b, i) => {
    const names = b.resnets.map((_, j) => (b.attentions[j] ? `attentions.${j}` : `resnets.${j}`));
    if (b.downsamplers.length) names.push('downsamplers.0');
    names.forEach((n, j) => pairs.push([`down_blocks.${i}.res_samples.${j}`, `down_blocks.${i}.${n}.out`]));
  });
  return pairs;
}

describe.each(['cpu', 'wasm'] as const)('UNet2DConditionModel parity with diffusers on %s', (backend) => {
  let unet: UNet2DConditionModel;
  beforeAll(async () => {
    await setBackend(backend);
    unet = await UNet2DConditionModel.fromPretrained(path.join(TINY, 'unet'));
  });
  afterAll(() => unet.dispose());

  it.each([
    ['t1', 1],
    ['t500', 500],
  ])('matches every reference tensor at %s', async (name, t) => {
    const sample = refTensor('unet/sample') as tf.Tensor4D;
    const ehs = refTensor('unet/encoder_hidden_states') as tf.Tensor3D;
    const remove = recordAll(unet);
    const { sample: out, outputs } = unet.forward(sample, t, ehs, { context: new ForwardContext() });
    remove();
    const keys = refs.keys(`unet/${name}/`).filter((k) => !k.endsWith('out_fp16_weights'));
    expect(keys.length).toBeGreaterThan(10);
    const resMap = new Map(resSampleKeys(unet));
    for (const key of keys) {
      const local = key.slice(`unet/${name}/`.length);
      const actual = local === 'out' ? out : outputs[resMap.get(local) ?? local];
      if (!actual) throw new Error(`no output recorded for ${local}`);
      const expected = refTensor(key);
      expect(actual.shape).toEqual(expected.shape);
      await expectClose(actual, await expected.data(), 1e-4, key);
      expected.dispose();
    }
    tf.dispose([sample, ehs, out, outputs]);
  });

  it('matches the batch-2 classifier-free-guidance case at t=999', async () => {
    const sample = refTensor('unet/b2_t999/sample') as tf.Tensor4D;
    const ehs = refTensor('unet/b2_t999/encoder_hidden_states') as tf.Tensor3D;
    const expected = refTensor('unet/b2_t999/out');
    const { sample: out } = unet.forward(sample, 999, ehs);
    await expectClose(out, await expected.data(), 1e-4, 'unet/b2_t999/out');
    tf.dispose([sample, ehs, out, expected]);
  });

  it('loads the fp16 variant within the fp16 tolerance', async () => {
    const half = await UNet2DConditionModel.fromPretrained(path.join(TINY, 'unet'), { variant: 'fp16' });
    const sample = refTensor('unet/sample') as tf.Tensor4D;
    const ehs = refTensor('unet/encoder_hidden_states') as tf.Tensor3D;
    const expected = refTensor('unet/t500/out_fp16_weights');
    const { sample: out } = half.forward(sample, 500, ehs);
    await expectClose(out, await expected.data(), 3e-3, 'unet/t500/out_fp16_weights');
    tf.dispose([sample, ehs, out, expected]);
    half.dispose();
  });

  it('does not leak tensors, with or without hooks', async () => {
    const sample = refTensor('unet/sample') as tf.Tensor4D;
    const ehs = refTensor('unet/encoder_hidden_states') as tf.Tensor3D;
    await expectNoLeak(() => unet.forward(sample, 10, ehs), 'UNet2DConditionModel.forward');
    const remove = recordAll(unet);
    await expectNoLeak(() => unet.forward(sample, [10], ehs), 'UNet2DConditionModel.forward with hooks');
    remove();
    tf.dispose([sample, ehs]);
  });
});

describe('UNet2DConditionModel on configs other than the fixture (wasm)', () => {
  beforeAll(() => setBackend('wasm'));

  /** An SD-2-style config: linear projections, per-block head counts, 2 layers, 2 transformer layers. */
  const sd2Like = {
    block_out_channels: [32, 48, 64],
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    layers_per_block: 2,
    transformer_layers_per_block: 2,
    attention_head_dim: [2, 4, 8],
    cross_attention_dim: 24,
    norm_num_groups: 8,
    use_linear_projection: true,
    in_channels: 4,
    out_channels: 4,
  };

  it('runs non-square latents, batch 2 with different contexts, each sample independent of the other', async () => {
    const unet = UNet2DConditionModel.create(sd2Like, { seed: 3 });
    const x = tf.randomNormal([2, 24, 16, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
    const ctx = tf.randomNormal([2, 9, 24], 0, 1, 'float32', 2) as tf.Tensor3D;
    const both = unet.forward(x, [10, 700], ctx).sample;
    expect(both.shape).toEqual([2, 24, 16, 4]);
    for (const i of [0, 1]) {
      const xi = tf.slice(x, [i, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
      const ci = tf.slice(ctx, [i, 0, 0], [1, -1, -1]) as tf.Tensor3D;
      const one = unet.forward(xi, [10, 700][i], ci).sample;
      const part = tf.slice(both, [i, 0, 0, 0], [1, -1, -1, -1]);
      await expectClose(one, await part.data(), 2e-5, `sample ${i}`);
      tf.dispose([xi, ci, one, part]);
    }
    tf.dispose([x, ctx, both]);
    unet.dispose();
  });

  it('gives the same output with 1×1-conv and linear projections holding the same weights', async () => {
    const conv = UNet2DConditionModel.create({ ...sd2Like, use_linear_projection: false }, { seed: 5 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unet-linear-'));
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const key of conv.parameters.keys()) {
      const t = conv.parameters.get(key);
      const isProj = /\.proj_(in|out)\.weight$/.test(key);
      const shape = isProj ? t.shape.slice(0, 2) : t.shape; // [O, I, 1, 1] → [O, I]
      tensors[key] = { dtype: 'F32', shape, data: (await t.data()) as Float32Array };
    }
    fs.writeFileSync(path.join(dir, 'diffusion_pytorch_model.safetensors'), serializeSafetensors(tensors));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...sd2Like, use_linear_projection: true }));
    const linear = await UNet2DConditionModel.fromPretrained(dir);
    const x = tf.randomNormal([1, 16, 8, 4], 0, 1, 'float32', 7) as tf.Tensor4D;
    const ctx = tf.randomNormal([1, 5, 24], 0, 1, 'float32', 8) as tf.Tensor3D;
    const a = conv.forward(x, 50, ctx).sample;
    const b = linear.forward(x, 50, ctx).sample;
    await expectClose(b, await a.data(), 1e-5, 'linear vs conv projections');
    tf.dispose([x, ctx, a, b]);
    conv.dispose();
    linear.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it('round-trips its weights through safetensors bit for bit, and dispose frees them all', async () => {
    const before = tf.memory().numTensors;
    const unet = UNet2DConditionModel.create(sd2Like, { seed: 9 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unet-save-'));
    await unet.save(dir);
    const loaded = await UNet2DConditionModel.fromPretrained(dir);
    expect(loaded.numParameters()).toBe(unet.numParameters());
    const x = tf.randomNormal([1, 8, 8, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
    const ctx = tf.randomNormal([1, 3, 24], 0, 1, 'float32', 2) as tf.Tensor3D;
    const a = unet.forward(x, 1, ctx).sample;
    const b = loaded.forward(x, 1, ctx).sample;
    await expectClose(b, await a.data(), 0, 'reloaded output');
    tf.dispose([x, ctx, a, b]);
    unet.dispose();
    loaded.dispose();
    expect(tf.memory().numTensors).toBe(before);
    fs.rmSync(dir, { recursive: true });
  });

  it('gives bit-identical outputs with sequential offload, holding only resident weights between blocks', async () => {
    const unet = UNet2DConditionModel.create(sd2Like, { seed: 4 });
    const x = tf.randomNormal([1, 8, 8, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
    const ctx = tf.randomNormal([1, 3, 24], 0, 1, 'float32', 2) as tf.Tensor3D;
    const plain = unet.forward(x, 3, ctx).sample;
    const backend = tf.backend() as unknown as { refCount(id: object): number };
    const blockWeight = unet.parameters.get('up_blocks.1.resnets.0.conv1.weight');
    const disable = await unet.enableSequentialOffload();
    expect(backend.refCount(blockWeight.dataId)).toBe(0); // evicted
    expect(backend.refCount(unet.parameters.get('conv_in.weight').dataId)).toBe(1); // stays resident
    const offloaded = unet.forward(x, 3, ctx).sample;
    expect(backend.refCount(blockWeight.dataId)).toBe(0); // evicted again after its block ran
    await expectClose(offloaded, await plain.data(), 0, 'offloaded output');
    disable();
    expect(backend.refCount(blockWeight.dataId)).toBe(1);
    const after = unet.forward(x, 3, ctx).sample;
    await expectClose(after, await plain.data(), 0, 'output after disabling offload');
    tf.dispose([x, ctx, plain, offloaded, after]);
    unet.dispose();
  });

  it('knows where its transformer blocks and up-block outputs are', () => {
    const unet = UNet2DConditionModel.create(sd2Like);
    const blocks = unet.transformerBlocks();
    // 2 down blocks × 2 layers × 2 transformer layers + mid 2 + 2 up blocks × 3 layers × 2
    expect(blocks).toHaveLength(8 + 2 + 12);
    expect(blocks[0]).toEqual({ path: 'down_blocks.0.attentions.0.transformer_blocks.0', channels: 32, stride: 1 });
    expect(blocks.find((b) => b.path.startsWith('mid_block'))).toMatchObject({ channels: 64, stride: 4 });
    expect(unet.upBlockShapes()).toEqual({
      'up_blocks.0': { channels: 64, stride: 4 },
      'up_blocks.1': { channels: 48, stride: 2 },
      'up_blocks.2': { channels: 32, stride: 1 },
    });
    expect(Object.keys(unet.attnProcessors())).toHaveLength(2 * blocks.length);
    unet.dispose();
  });
});

describe('UNet2DConditionModel refuses bad input with a clear error', () => {
  beforeAll(() => setBackend('wasm'));

  it('names an unknown block type and a head count that does not divide the width', () => {
    expect(() => UNet2DConditionModel.create({ down_block_types: ['CrossAttnDownBlock2D', 'AttnDownBlock2D', 'DownBlock2D', 'DownBlock2D'] })).toThrow(
      /Error in UNet2DConditionConfig\.down_block_types: expected types from CrossAttnDownBlock2D, DownBlock2D, got "AttnDownBlock2D"/,
    );
    expect(() => UNet2DConditionModel.create({ attention_head_dim: 7 })).toThrow(/attention_head_dim: expected a head count dividing block_out_channels\[0\] \(320\), got 7/);
    expect(() => UNet2DConditionModel.create({ class_embed_type: 'timestep' })).toThrow(/class_embed_type: expected null \(other values are not implemented\)/);
  });

  it('names the latent size that is not a multiple of the downsampling factor, and bad contexts', async () => {
    const unet = await UNet2DConditionModel.fromPretrained(path.join(TINY, 'unet'));
    const odd = tf.zeros([1, 18, 16, 4]) as tf.Tensor4D;
    const ctx = tf.zeros([1, 77, 32]) as tf.Tensor3D;
    expect(() => unet.forward(odd, 1, ctx)).toThrow(/latent size 18×16 is not a multiple of the UNet's downsampling factor 4; resize or pad the image to a multiple of vae_scale_factor × 4 pixels/);
    const nchw = tf.zeros([1, 4, 16, 16]) as tf.Tensor4D;
    expect(() => unet.forward(nchw, 1, ctx)).toThrow(/sample must be NHWC \[B, H, W, 4\], got \[1,4,16,16\]/);
    const x = tf.zeros([1, 16, 16, 4]) as tf.Tensor4D;
    const wide = tf.zeros([1, 77, 768]) as tf.Tensor3D;
    expect(() => unet.forward(x, 1, wide)).toThrow(/encoderHiddenStates must be \[1, M, 32\], got \[1,77,768\]/);
    expect(() => unet.forward(x, [1, 2], ctx)).toThrow(/2 timesteps for a batch of 1/);
    tf.dispose([odd, ctx, nchw, x, wide]);
    unet.dispose();
    expect(() => unet.forward(x, 1, ctx)).toThrow(/disposed/);
  });

  it('names the file of a truncated checkpoint, and the key of a missing or mis-shaped tensor', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unet-bad-'));
    const src = path.join(TINY, 'unet');
    fs.copyFileSync(path.join(src, 'config.json'), path.join(dir, 'config.json'));
    const full = fs.readFileSync(path.join(src, 'diffusion_pytorch_model.safetensors'));
    const file = path.join(dir, 'diffusion_pytorch_model.safetensors');
    fs.writeFileSync(file, full.subarray(0, full.length - 1000));
    const before = tf.memory().numTensors;
    await expect(UNet2DConditionModel.fromPretrained(dir)).rejects.toThrow(new RegExp(`${file}: tensor '.*': data ends at byte \\d+ of a \\d+-byte data section; the file is truncated`));
    fs.writeFileSync(file, full.subarray(0, 5));
    await expect(UNet2DConditionModel.fromPretrained(dir)).rejects.toThrow(/only 5 bytes; a safetensors file starts with an 8-byte header length/);

    const source = new SafetensorsBytes(new Uint8Array(full), 'unet');
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const key of source.keys()) tensors[key] = { dtype: 'F32', shape: [...source.info(key)!.shape], data: source.read(key) as Float32Array };
    const { 'conv_in.bias': _dropped, ...withoutBias } = tensors;
    fs.writeFileSync(file, serializeSafetensors(withoutBias));
    await expect(UNet2DConditionModel.fromPretrained(dir)).rejects.toThrow(/missing tensor 'conv_in\.bias' \(expected shape \[16\]\); tensors under 'conv_in\.': 'conv_in\.weight'/);
    const k = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight';
    fs.writeFileSync(file, serializeSafetensors({ ...tensors, [k]: { dtype: 'F32', shape: [32, 16], data: new Float32Array(512) } }));
    await expect(UNet2DConditionModel.fromPretrained(dir)).rejects.toThrow(new RegExp(`tensor '${k.replace(/\./g, '\\.')}' has shape \\[32,16\\], expected \\[16,32\\]`));
    expect(tf.memory().numTensors).toBe(before); // nothing left allocated by failed loads
    fs.rmSync(dir, { recursive: true });
    await expect(UNet2DConditionModel.fromPretrained(dir)).rejects.toThrow(/no such folder/);
  });
});
