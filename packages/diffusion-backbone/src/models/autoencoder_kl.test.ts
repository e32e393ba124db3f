import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, SafetensorsBytes, serializeSafetensors, setBackend } from '@png/core';
import { FixtureIndex, expectClose, expectNoLeak, nchwToNhwc, sharedFixturesDir } from '@png/core/testing';
import { AutoencoderKL, SD15_VAE_CONFIG, resolveAutoencoderKLConfig } from './autoencoder_kl';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');
const VAE_DIR = path.join(TINY, 'vae');
const refs = new FixtureIndex(TINY);
const expectedParams = refs.index.params as { vae: number; 'vae_encoder+quant_conv': number };

/** A reference tensor, NCHW on disk, as NHWC. */
function refNhwc(key: string): tf.Tensor4D {
  const r = refs.read(key);
  const { data, shape } = nchwToNhwc(r.data as Float32Array, r.shape);
  return tf.tensor4d(data, shape as [number, number, number, number]);
}

/** Puts the output of every module whose path is in `paths` into context.outputs as `<path>.out`. */
function capture(vae: AutoencoderKL, paths: string[]): () => void {
  return vae.addBlockHook((p) => paths.includes(p), {
    postForward: (p, out, ctx) => {
      ctx.outputs[`${p}.out`] = out;
    },
  });
}

/** A tiny VAE of a different legal shape: 3 levels, 8 groups, two resnets per level. */
const THREE_LEVELS = {
  block_out_channels: [16, 32, 32],
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  layers_per_block: 2,
  norm_num_groups: 8,
  latent_channels: 4,
};

describe.each(['cpu', 'wasm'] as const)('AutoencoderKL on %s', (backend) => {
  let vae: AutoencoderKL;
  let image: tf.Tensor4D;
  /** A 16×16 corner of the image, for checks that do not need the full size (the cpu backend is slow). */
  let crop: tf.Tensor4D;
  beforeAll(async () => {
    await setBackend(backend);
    vae = await AutoencoderKL.fromPretrained(VAE_DIR);
    image = refNhwc('vae/image');
    crop = tf.slice(image, [0, 0, 0, 0], [1, 16, 16, 3]);
  });
  afterAll(() => {
    vae.dispose();
    tf.dispose([image, crop]);
  });

  it('loads every tensor of the fixture checkpoint', () => {
    expect(vae.numParameters()).toBe(expectedParams.vae);
    expect(vae.parameters.keys()).toHaveLength(124);
    expect(vae.config.scaling_factor).toBe(0.18215);
    expect(vae.downsampleFactor).toBe(2);
  });

  it('matches every vae/* reference of diffusers within 1e-4', async () => {
    const remove = capture(vae, ['encoder.down_blocks.0', 'encoder.conv_out']);
    const { mean, logvar, std, outputs } = vae.encode(image);
    remove();
    const scaled = vae.latents(image);
    const decoded = vae.decode(mean);
    const actual: Record<string, tf.Tensor> = {
      'vae/latent_dist.mean': mean,
      'vae/latent_dist.logvar': logvar,
      'vae/latent_dist.std': std,
      'vae/latents_scaled': scaled,
      'vae/encoder.down_blocks.0.out': outputs['encoder.down_blocks.0.out'],
      'vae/encoder.conv_out.out': outputs['encoder.conv_out.out'],
      'vae/decoded_from_mean': decoded,
    };
    expect(refs.keys('vae/').filter((k) => k !== 'vae/image').sort()).toEqual(Object.keys(actual).sort());
    for (const [key, t] of Object.entries(actual)) {
      const expected = refNhwc(key);
      expect(t.shape).toEqual(expected.shape);
      await expectClose(t, await expected.data(), 1e-4, key);
      expected.dispose();
    }
    tf.dispose([mean, logvar, std, outputs, scaled, decoded]);
  });

  it('samples mean + std·ε, reproducibly for a seed', async () => {
    const a = vae.sample(crop, 11);
    const b = vae.sample(crop, 11);
    await expectClose(b, await a.data(), 0, 'same seed');
    const { mean, logvar, std, outputs } = vae.encode(crop);
    const eps = tf.randomNormal(mean.shape, 0, 1, 'float32', 11);
    const expected = tf.add(mean, tf.mul(std, eps));
    await expectClose(a, await expected.data(), 1e-6, 'sample');
    tf.dispose([a, b, mean, logvar, std, outputs, eps, expected]);
  });

  it('builds only encoder + quant_conv with parts: encoder, and gives the same latents', async () => {
    const enc = await AutoencoderKL.fromPretrained(VAE_DIR, { parts: 'encoder' });
    expect(enc.numParameters()).toBe(expectedParams['vae_encoder+quant_conv']);
    expect(enc.parameters.keys().some((k) => k.startsWith('decoder.') || k.startsWith('post_quant_conv.'))).toBe(false);
    expect(enc.decoder).toBeUndefined();
    const a = enc.latents(crop);
    const b = vae.latents(crop);
    await expectClose(a, await b.data(), 0, 'encoder-only latents');
    const z = tf.zeros([1, 8, 8, 4]) as tf.Tensor4D;
    expect(() => enc.decode(z)).toThrow(/built with parts: 'encoder' \(no decoder\); load it with parts: 'all' to decode/);
    tf.dispose([a, b, z]);
    enc.dispose();
  });

  it('reads the legacy query/key/value/proj_attn names of older hub VAE files (SD v1.5)', async () => {
    const legacyName = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' } as Record<string, string>;
    const source = new SafetensorsBytes(new Uint8Array(fs.readFileSync(path.join(VAE_DIR, 'diffusion_pytorch_model.safetensors'))), 'vae');
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const key of source.keys()) {
      const renamed = key.replace(/\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\./, (_, n: string) => `.attentions.0.${legacyName[n]}.`);
      tensors[renamed] = { dtype: 'F32', shape: [...source.info(key)!.shape], data: source.read(key) as Float32Array };
    }
    expect(Object.keys(tensors)).toContain('decoder.mid_block.attentions.0.proj_attn.weight');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vae-legacy-'));
    fs.copyFileSync(path.join(VAE_DIR, 'config.json'), path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'diffusion_pytorch_model.safetensors'), serializeSafetensors(tensors));
    const legacy = await AutoencoderKL.fromPretrained(dir);
    expect(legacy.parameters.keys()).toContain('encoder.mid_block.attentions.0.query.weight');
    const a = legacy.latents(crop);
    const b = vae.latents(crop);
    await expectClose(a, await b.data(), 0, 'latents with legacy names');
    tf.dispose([a, b]);
    legacy.dispose();
    fs.rmSync(dir, { recursive: true });
  });

  it('does not leak tensors in encode, latents, sample and decode, with or without hooks', async () => {
    const z = tf.randomNormal([1, 8, 8, 4], 0, 1, 'float32', 3) as tf.Tensor4D;
    await expectNoLeak(() => vae.encode(crop), 'AutoencoderKL.encode');
    await expectNoLeak(() => vae.latents(crop), 'AutoencoderKL.latents');
    await expectNoLeak(() => vae.sample(crop, 1), 'AutoencoderKL.sample');
    await expectNoLeak(() => vae.decode(z), 'AutoencoderKL.decode');
    const remove = capture(vae, ['encoder.down_blocks.0', 'encoder.mid_block.attentions.0', 'quant_conv', 'decoder.up_blocks.0']);
    await expectNoLeak(() => vae.encode(crop), 'AutoencoderKL.encode with hooks');
    await expectNoLeak(() => vae.latents(crop), 'AutoencoderKL.latents with hooks');
    await expectNoLeak(() => vae.decode(z), 'AutoencoderKL.decode with hooks');
    remove();
    z.dispose();
  });

  it('frees every weight on dispose', async () => {
    const before = tf.memory().numTensors;
    const other = await AutoencoderKL.fromPretrained(VAE_DIR);
    const layouts = other.parameters.keys().filter((key) => other.parameters.layoutOf(key)).length; // the conv weights' HWIO copies off wasm
    expect(layouts).toBe(backend === 'wasm' ? 0 : 30);
    expect(tf.memory().numTensors).toBe(before + 124 + layouts);
    other.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => other.latents(crop)).toThrow(/AutoencoderKL was disposed/);
  });

  it('runs a random-init 3-level VAE on a non-square batch of 2, sample by sample alike', async () => {
    const model = AutoencoderKL.create(THREE_LEVELS, { seed: 4 });
    expect(model.downsampleFactor).toBe(4);
    const x = tf.randomUniform([2, 48, 32, 3], -1, 1, 'float32', 5) as tf.Tensor4D;
    const remove = capture(model, ['encoder.down_blocks.0', 'encoder.down_blocks.1', 'encoder.down_blocks.2', 'encoder.conv_out', 'decoder.up_blocks.0']);
    const { mean, logvar, std, outputs } = model.encode(x);
    remove();
    expect(mean.shape).toEqual([2, 12, 8, 4]);
    expect(logvar.shape).toEqual([2, 12, 8, 4]);
    expect(std.shape).toEqual([2, 12, 8, 4]);
    expect(outputs['encoder.down_blocks.0.out'].shape).toEqual([2, 24, 16, 16]);
    expect(outputs['encoder.down_blocks.1.out'].shape).toEqual([2, 12, 8, 32]);
    expect(outputs['encoder.down_blocks.2.out'].shape).toEqual([2, 12, 8, 32]);
    expect(outputs['encoder.conv_out.out'].shape).toEqual([2, 12, 8, 8]);
    const decoded = model.decode(mean);
    expect(decoded.shape).toEqual([2, 48, 32, 3]);
    // GroupNorm and attention must not mix the samples of a batch
    const second = tf.slice(x, [1, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
    const alone = model.latents(second);
    const fromBatch = tf.mul(tf.slice(mean, [1, 0, 0, 0], [1, -1, -1, -1]), model.config.scaling_factor);
    await expectClose(alone, await fromBatch.data(), 1e-5, 'sample 1 alone vs in the batch');
    tf.dispose([x, mean, logvar, std, outputs, decoded, second, alone, fromBatch]);
    model.dispose();
  });
});

describe('AutoencoderKL refuses bad input with a clear error', () => {
  let dir: string;
  beforeAll(async () => {
    await setBackend('wasm');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vae-bad-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('names a missing folder and a missing or truncated checkpoint file', async () => {
    await expect(AutoencoderKL.fromPretrained(path.join(dir, 'nope'))).rejects.toThrow(/nope: no such folder/);
    fs.copyFileSync(path.join(VAE_DIR, 'config.json'), path.join(dir, 'config.json'));
    const file = path.join(dir, 'diffusion_pytorch_model.safetensors');
    await expect(AutoencoderKL.fromPretrained(dir)).rejects.toThrow(`${file}: missing.`);
    const full = fs.readFileSync(path.join(VAE_DIR, 'diffusion_pytorch_model.safetensors'));
    fs.writeFileSync(file, full.subarray(0, full.length - 4096));
    const before = tf.memory().numTensors;
    await expect(AutoencoderKL.fromPretrained(dir)).rejects.toThrow(new RegExp(`${file}: tensor '.*': data ends at byte \\d+ of a \\d+-byte data section; the file is truncated`));
    fs.writeFileSync(file, full.subarray(0, 6));
    await expect(AutoencoderKL.fromPretrained(dir, { parts: 'encoder' })).rejects.toThrow(`${file}: only 6 bytes`);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('names a mis-shaped, missing or unexpected tensor, and frees what it loaded', async () => {
    fs.copyFileSync(path.join(VAE_DIR, 'config.json'), path.join(dir, 'config.json'));
    const file = path.join(dir, 'diffusion_pytorch_model.safetensors');
    const source = new SafetensorsBytes(new Uint8Array(fs.readFileSync(path.join(VAE_DIR, 'diffusion_pytorch_model.safetensors'))), 'vae');
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const key of source.keys()) tensors[key] = { dtype: 'F32', shape: [...source.info(key)!.shape], data: source.read(key) as Float32Array };
    const before = tf.memory().numTensors;

    const k = 'encoder.mid_block.attentions.0.to_q.weight';
    fs.writeFileSync(file, serializeSafetensors({ ...tensors, [k]: { dtype: 'F32', shape: [64, 32], data: new Float32Array(2048) } }));
    await expect(AutoencoderKL.fromPretrained(dir)).rejects.toThrow(`${file}: tensor '${k}' has shape [64,32], expected [64,64]`);

    const { 'encoder.conv_out.bias': _dropped, ...withoutBias } = tensors;
    fs.writeFileSync(file, serializeSafetensors(withoutBias));
    await expect(AutoencoderKL.fromPretrained(dir, { parts: 'encoder' })).rejects.toThrow(
      /missing tensor 'encoder\.conv_out\.bias' \(expected shape \[8\]\); tensors under 'encoder\.conv_out\.': 'encoder\.conv_out\.weight'/,
    );

    // the encoder-only load skips decoder tensors, not stray ones
    const extra = { dtype: 'F32' as const, shape: [1], data: new Float32Array(1) };
    fs.writeFileSync(file, serializeSafetensors({ ...tensors, 'encoder.extra.weight': extra }));
    await expect(AutoencoderKL.fromPretrained(dir, { parts: 'encoder' })).rejects.toThrow(/unexpected tensors 'encoder\.extra\.weight'/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects a bad config with a ConfigError naming the field, before allocating', async () => {
    const before = tf.memory().numTensors;
    const bad = { ...THREE_LEVELS, down_block_types: ['DownEncoderBlock2D', 'AttnDownEncoderBlock2D', 'DownEncoderBlock2D'] };
    expect(() => AutoencoderKL.create(bad)).toThrow(ConfigError);
    expect(() => AutoencoderKL.create(bad)).toThrow(
      'Error in AutoencoderKLConfig.down_block_types: expected block types from DownEncoderBlock2D, got "AttnDownEncoderBlock2D"',
    );
    expect(() => AutoencoderKL.create({ ...THREE_LEVELS, up_block_types: ['UpDecoderBlock2D'] })).toThrow(
      /Error in AutoencoderKLConfig\.up_block_types: expected a list of 3 block types, one per entry of block_out_channels, got \["UpDecoderBlock2D"\]/,
    );
    expect(() => AutoencoderKL.create({ ...THREE_LEVELS, norm_num_groups: 12 })).toThrow(/AutoencoderKLConfig\.block_out_channels: expected channel counts divisible by norm_num_groups \(12\)/);
    expect(() => AutoencoderKL.create({ ...THREE_LEVELS, layers_per_block: 0 })).toThrow(/AutoencoderKLConfig\.layers_per_block: expected a positive integer, got 0/);
    expect(() => AutoencoderKL.create({ ...THREE_LEVELS, act_fn: 'tanhh' })).toThrow(/AutoencoderKLConfig\.act_fn/);
    expect(() => AutoencoderKL.create({ ...THREE_LEVELS, mid_block_add_attention: false })).toThrow(/mid_block_add_attention: expected true \(other values are not implemented\)/);
    expect(() => AutoencoderKL.create(THREE_LEVELS, { parts: 'decoder' as 'all' })).toThrow(/parts must be one of 'encoder', 'all', got "decoder"/);
    await expect(AutoencoderKL.fromPretrained(path.join(TINY, 'unet'))).rejects.toThrow(/AutoencoderKLConfig\._class_name: expected 'AutoencoderKL' .*, got "UNet2DConditionModel"/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('names a wrong image or latent shape and says what to do', async () => {
    const vae = await AutoencoderKL.fromPretrained(VAE_DIR);
    const nchw = tf.zeros([1, 3, 64, 64]) as tf.Tensor4D;
    expect(() => vae.encode(nchw)).toThrow(
      'AutoencoderKL.encode: image must be NHWC [B, H, W, 3] with values in [-1, 1], got [1,3,64,64]; it looks NCHW, transpose it with tf.transpose(image, [0, 2, 3, 1])',
    );
    const rank3 = tf.zeros([64, 64, 3]);
    expect(() => vae.latents(rank3 as unknown as tf.Tensor4D)).toThrow(/AutoencoderKL\.latents: image must be NHWC \[B, H, W, 3\] .*got \[64,64,3\]$/);
    const odd = tf.zeros([1, 63, 64, 3]) as tf.Tensor4D;
    expect(() => vae.latents(odd)).toThrow(/image size 63×64 \(shape \[1,63,64,3\]\) is not a multiple of 2, the VAE's downsampling factor; resize or pad H and W to multiples of 2/);
    const ints = tf.zeros([1, 64, 64, 3], 'int32') as tf.Tensor4D;
    expect(() => vae.sample(ints)).toThrow(/image must be float32 in \[-1, 1\], got int32/);
    const z = tf.zeros([1, 32, 32, 8]) as tf.Tensor4D;
    expect(() => vae.decode(z)).toThrow('AutoencoderKL.decode: z must be NHWC latents [B, h, w, 4], got [1,32,32,8]');
    tf.dispose([nchw, rank3, odd, ints, z]);
    vae.dispose();
  });
});

describe('SD15_VAE_CONFIG', () => {
  beforeAll(() => setBackend('wasm'));

  it('is a valid config and builds SD v1.5 parameter counts', () => {
    expect(resolveAutoencoderKLConfig(SD15_VAE_CONFIG)).toEqual(SD15_VAE_CONFIG);
    const costs = JSON.parse(fs.readFileSync(path.join(TINY, 'sd15_costs.json'), 'utf8')) as { vae_params: number; vae_encoder_params: number };
    const encoder = AutoencoderKL.create(SD15_VAE_CONFIG, { parts: 'encoder' });
    expect(encoder.numParameters()).toBe(costs.vae_encoder_params);
    encoder.dispose();
    const full = AutoencoderKL.create(SD15_VAE_CONFIG);
    expect(full.numParameters()).toBe(costs.vae_params);
    full.dispose();
  });
});
