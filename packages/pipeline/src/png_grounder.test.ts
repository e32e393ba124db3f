import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { resize, seededNormal, setBackend, type BackendName } from '@png/core';
import { FOLDER_FETCH_BASE, expectNoLeak, folderFetch, sharedFixturesDir } from '@png/core/testing';
import { AutoencoderKL, CLIPTextModel, CLIPTokenizer, DDPMScheduler, DiffusionBackbone, FeatureTaps, UNet2DConditionModel } from '@png/diffusion-backbone';
import { letterbox, unletterbox, type RgbImage } from '@png/png-data';
import { PngGrounder, type PngGrounderConfig } from './png_grounder';
import { SMALL_GROUNDER_CONFIG, TEST_NARRATIVES } from './test_support';
import { Trainer, TrainingDivergedError } from './trainer';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');

const SMALL: Partial<PngGrounderConfig> = SMALL_GROUNDER_CONFIG;

const narratives = TEST_NARRATIVES;

/** Images [2, S, S, 3] in [-1, 1] and binary targets [2, S, S, 3]: one square region per phrase. */
function batch(size: number): { images: tf.Tensor4D; targets: tf.Tensor4D } {
  const t = new Float32Array(2 * size * size * 3);
  const boxes = [
    [[0, 0, size / 2, size / 2], [size / 2, 0, size, size], null],
    [[0, size / 2, size / 2, size], [size / 2, size / 2, size, size], [0, 0, size, size / 2]],
  ] as const;
  boxes.forEach((phrases, b) =>
    phrases.forEach((box, p) => {
      if (!box) return;
      const [y0, x0, y1, x1] = box;
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) t[((b * size + y) * size + x) * 3 + p] = 1;
    }),
  );
  return tf.tidy(() => {
    const targets = tf.tensor4d(t, [2, size, size, 3]);
    // the image shows the targets as colours, plus a little texture
    const images = tf.add(tf.mul(targets, 1.6), tf.mul(tf.randomUniform([2, size, size, 3], -0.2, 0.2, 'float32', 1), 1)) as tf.Tensor4D;
    return { images: tf.sub(images, 0.8) as tf.Tensor4D, targets };
  });
}

async function overfit(grounder: PngGrounder, size: number, steps: number, lr: number): Promise<{ first: number; last: number; leaked: number }> {
  const { images, targets } = batch(size);
  const phrases = grounder.encodePhrases(narratives);
  const latents = grounder.backbone.encodeImages(images);
  const trainer = new Trainer({ variables: grounder.namedVariables(), lossFn: () => grounder.loss(latents, phrases, targets), optimizer: { lr }, clip_grad_norm: 1 });
  const losses: number[] = [];
  let live = 0;
  for (let i = 0; i < steps; i++) {
    losses.push((await trainer.step(undefined)).loss);
    if (i === 4) live = tf.memory().numTensors;
  }
  const leaked = tf.memory().numTensors - live;
  trainer.dispose();
  tf.dispose([images, targets, phrases, latents]);
  return { first: losses[0], last: losses[losses.length - 1], leaked };
}

describe('PngGrounder on the tiny SD backbone (wasm)', () => {
  let backbone: DiffusionBackbone;
  beforeAll(async () => {
    await setBackend('wasm');
    backbone = await DiffusionBackbone.fromPretrained(TINY);
  });
  afterAll(() => backbone.dispose());

  it('predicts per-layer mask logits for every phrase, without leaking', async () => {
    const grounder = PngGrounder.create(backbone, SMALL, { seed: 1 });
    const { images } = batch(32);
    const out = grounder.forward(images, narratives);
    expect(out.predictions).toHaveLength(3);
    expect(out.predictions[2].shape).toEqual([2, 16, 16, 3]);
    expect([...(await out.phraseMask.data())]).toEqual([1, 1, 0, 1, 1, 1]);
    expect(out.features.map((f) => f.stride)).toEqual([8, 4, 2]);
    tf.dispose(out);
    await expectNoLeak(() => grounder.forward(images, narratives), 'PngGrounder.forward');
    tf.dispose(images);
    grounder.dispose();
  });

  it('predicts masks at each original image size, removing the letterbox as groundNarrative does', async () => {
    const grounder = PngGrounder.create(backbone, { ...SMALL, eipa: { ...SMALL.eipa, gate_init: 0.3 } }, { seed: 1 });
    // square canvases without transforms: each image is its own canvas, masks = bilinear-upsampled logits > 0
    const { images } = batch(32);
    const masks = await grounder.predict(images, narratives);
    expect(masks.map((m) => m.map((mask) => mask.length))).toEqual([[1024, 1024], [1024, 1024, 1024]]);
    const out = grounder.forward(images, narratives);
    const above = tf.tidy(() => tf.greater(resize(out.predictions[2], [32, 32], 'bilinear'), 0)); // [2, 32, 32, P]
    const values = await above.data();
    const at = (i: number, j: number) => Uint8Array.from({ length: 1024 }, (_, k) => values[(i * 1024 + k) * 3 + j]);
    expect(masks[1][2]).toEqual(at(1, 2));
    expect(masks[0][1]).toEqual(at(0, 1));
    tf.dispose([out, above, images]);
    // letterboxed images of other sizes come back at their own size
    const rgb = (height: number, width: number, seed: number): RgbImage => ({ height, width, data: Uint8Array.from({ length: height * width * 3 }, (_, k) => (k * 37 + seed * 101) % 256) });
    const boxed = [letterbox(rgb(20, 32, 1), 32), letterbox(rgb(32, 12, 2), 32)];
    const canvases = tf.concat(boxed.map((b) => b.tensor), 0) as tf.Tensor4D;
    const transforms = boxed.map((b) => b.transform);
    const original = await grounder.predict(canvases, narratives, transforms);
    expect(original.map((m) => m.map((mask) => mask.length))).toEqual([[640, 640], [384, 384, 384]]);
    const last = tf.tidy(() => tf.slice(grounder.forward(canvases, narratives).predictions[2], [1, 0, 0, 0], [1, -1, -1, 3]) as tf.Tensor4D);
    expect(original[1]).toEqual(await unletterbox(last, transforms[1]));
    await expect(grounder.predict(canvases, narratives, transforms.slice(1))).rejects.toThrow('PngGrounder.predict: 2 images but 1 letterbox transforms');
    const wide = tf.zeros([2, 32, 40, 3]) as tf.Tensor4D;
    await expect(grounder.predict(wide, narratives)).rejects.toThrow('PngGrounder.predict: images are 32×40 (H×W) and no letterbox transforms were given');
    tf.dispose([last, canvases, wide, boxed.map((b) => b.tensor)]);
    grounder.dispose();
  });

  it("reads the latents noised on the backbone's own schedule with noise_seed", async () => {
    const { images } = batch(32);
    const schedule = { beta_schedule: 'linear' as const, beta_end: 0.02 }; // not SD's, so only the backbone's config gives these numbers
    const linear = DiffusionBackbone.fromComponents({ unet: backbone.unet, vae: backbone.vae, textEncoder: backbone.textEncoder, tokenizer: backbone.tokenizer, schedulerConfig: schedule });
    const seeded = PngGrounder.create(linear, { ...SMALL, noise_seed: 3, timestep: 400 }, { seed: 6 });
    const phrases = seeded.encodePhrases(narratives);
    const latents = linear.encodeImages(images);
    const ours = seeded.forwardLatents(latents, phrases);
    seeded.dispose();
    const clean = PngGrounder.create(linear, { ...SMALL, timestep: 400 }, { seed: 6 }); // the same weights, reading the latents it is given
    const noised = new DDPMScheduler(schedule).addNoise(latents, seededNormal(latents.shape, 3) as tf.Tensor4D, [400, 400]);
    const expected = clean.forwardLatents(noised, phrases);
    const unnoised = clean.forwardLatents(latents, phrases);
    const bits = async (t: tf.Tensor) => Buffer.from((await t.data()).buffer);
    expect((await bits(ours.predictions[2])).equals(await bits(expected.predictions[2]))).toBe(true);
    expect((await bits(ours.predictions[2])).equals(await bits(unnoised.predictions[2]))).toBe(false);
    clean.dispose(); // `linear` shares the backbone's modules: not disposed
    tf.dispose([images, phrases, latents, ours, noised, expected, unnoised]);
  });

  it('reads the backbone exactly as the static-prompted UNet when every EIPA switch is off', async () => {
    const { images } = batch(32);
    const grounder = PngGrounder.create(backbone, { ...SMALL, eipa: { extract: false, inject: false, dynamic_prompt: false } }, { seed: 2 });
    const phrases = grounder.encodePhrases(narratives);
    const out = grounder.forwardFeatures(images, phrases);
    const ours = await Promise.all(out.features.map((f) => f.tensor.data()));
    tf.dispose(out);
    grounder.dispose(); // detaches
    const taps = new FeatureTaps(backbone.unet, { imageStride: 2 });
    const latents = backbone.encodeImages(images);
    const plain = backbone.unet.forward(latents, 1, phrases.tensor, { encoderAttentionMask: phrases.mask });
    const reference = await Promise.all(taps.pyramid(plain.outputs).map((f) => f.tensor.data()));
    taps.remove();
    reference.forEach((r, i) => expect(Buffer.from(r.buffer).equals(Buffer.from(ours[i].buffer))).toBe(true));
    tf.dispose([images, phrases, latents, plain]);
  });

  it('overfits one batch (loss −90%) through the frozen UNet, which stays bit-identical, with no leak over 50 steps', async () => {
    const grounder = PngGrounder.create(backbone, { ...SMALL, eipa: { ...SMALL.eipa, gate_init: 0.1 } }, { seed: 3 });
    const frozen = await Promise.all(backbone.unet.parameters.keys().map(async (k) => [k, await backbone.unet.parameters.get(k).data()] as const));
    const adapterKey = grounder.adapter.parameters.keys().find((k) => k.startsWith('down_blocks.0.') && k.endsWith('inject.to_q.weight'))!;
    const adapterBefore = await grounder.adapter.parameters.get(adapterKey).data();
    const { first, last, leaked } = await overfit(grounder, 32, 60, 3e-3);
    expect(last).toBeLessThan(0.1 * first);
    expect(leaked).toBe(0);
    const adapterAfter = await grounder.adapter.parameters.get(adapterKey).data();
    expect(Buffer.from(adapterAfter.buffer).equals(Buffer.from(adapterBefore.buffer))).toBe(false); // gradients reached the first down block
    for (const [k, data] of frozen) expect(Buffer.from((await backbone.unet.parameters.get(k).data()).buffer).equals(Buffer.from(data.buffer))).toBe(true);
    grounder.dispose();
  });

  it('saves and reloads (identical predictions); another config is a clear error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grounder-'));
    const grounder = PngGrounder.create(backbone, { ...SMALL, eipa: { ...SMALL.eipa, gate_init: 0.2 } }, { seed: 4 });
    await grounder.save(dir);
    const { images } = batch(32);
    const a = grounder.forward(images, narratives);
    const aLast = await a.predictions[2].data();
    tf.dispose(a);
    grounder.dispose();
    const fetch = folderFetch(dir); // what a browser does: PngGrounder.fromUrl
    for (const load of [() => PngGrounder.fromPretrained(dir, backbone), () => PngGrounder.fromUrl(FOLDER_FETCH_BASE, backbone, { fetch })]) {
      const loaded = await load();
      const b = loaded.forward(images, narratives);
      expect(Buffer.from((await b.predictions[2].data()).buffer).equals(Buffer.from(aLast.buffer))).toBe(true);
      tf.dispose(b);
      loaded.dispose();
    }
    const mlmaConfig = JSON.parse(fs.readFileSync(path.join(dir, 'mlma', 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'mlma', 'config.json'), JSON.stringify({ ...mlmaConfig, hidden_dim: 64, mask_dim: 64 }));
    await expect(PngGrounder.fromPretrained(dir, backbone)).rejects.toThrow(/has shape \[.*\], expected \[.*\]/);
    const module = { config: '{}', weights: new Uint8Array(0) };
    expect(() => PngGrounder.fromFiles({ config: '{"max_phrases": 4', eipa: module, mlma: module, decoder: module }, backbone, { name: 'https://x/g' })).toThrow(/^https:\/\/x\/g\/config\.json: not valid JSON/);
    await expect(PngGrounder.fromUrl(FOLDER_FETCH_BASE, backbone, { fetch })).rejects.toThrow(/^http:\/\/files\/mlma\/model\.safetensors: tensor '.*' has shape \[.*\], expected \[.*\]/);
    const weights = path.join(dir, 'decoder', 'model.safetensors');
    fs.rmSync(weights);
    fs.mkdirSync(weights);
    await expect(PngGrounder.fromPretrained(dir, backbone)).rejects.toThrow(`${weights}: is a folder; expected the decoder weights (safetensors)`);
    tf.dispose(images);
    fs.rmSync(dir, { recursive: true });
  });

  it('refuses bad input with errors that name it', async () => {
    const grounder = PngGrounder.create(backbone, SMALL, { seed: 5 });
    const { images, targets } = batch(32);
    expect(() => grounder.forward(images, [narratives[0], { caption: 'the sky', phrases: [] }])).toThrow('narrative 1: 0 phrases');
    expect(() => grounder.forward(images, [narratives[0], { caption: 'a b c d e', phrases: [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]] }])).toThrow('narrative 1: 5 phrases, above the configured maximum of 4 (max_phrases)');
    expect(() => grounder.forward(images, [narratives[0]])).toThrow('2 images but 1 narratives');
    const odd = tf.zeros([2, 36, 32, 3]) as tf.Tensor4D;
    expect(() => grounder.forward(odd, narratives)).toThrow('image size 36×32 is not a multiple of 8');
    const phrases = grounder.encodePhrases(narratives);
    const latents = backbone.encodeImages(images);
    const wrongTargets = tf.zeros([2, 32, 32, 5]) as tf.Tensor4D;
    expect(() => grounder.loss(latents, phrases, wrongTargets)).toThrow(/\[2,32,32,5\]/);
    // NaN in the loss: the trainer stops with a clear message and the last good checkpoint stays
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'grounder-nan-'));
    const dir = path.join(root, 'checkpoint');
    let poison = false;
    const nanTargets = tf.fill([2, 32, 32, 3], NaN) as tf.Tensor4D;
    const trainer = new Trainer({ variables: grounder.namedVariables(), lossFn: () => grounder.loss(latents, phrases, poison ? nanTargets : targets), optimizer: { lr: 1e-3 } });
    await trainer.step(undefined);
    await trainer.save(dir, { note: 'good' });
    poison = true;
    await expect(trainer.step(undefined)).rejects.toThrow(TrainingDivergedError);
    await expect(trainer.resume(dir)).resolves.toEqual({ note: 'good' });
    trainer.dispose();
    tf.dispose([images, targets, odd, phrases, latents, wrongTargets, nanTargets]);
    fs.rmSync(root, { recursive: true });
    grounder.dispose();
  });
});

describe.each(['cpu', 'wasm'] as BackendName[])('a small PngGrounder overfits one batch on %s', (backend) => {
  it('loss falls by ≥ 90%', async () => {
    await setBackend(backend);
    // a small random UNet (2 levels, 8/16 channels) with the fixture's VAE, CLIP and tokenizer
    const unet = UNet2DConditionModel.create(
      { block_out_channels: [8, 16], down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'], layers_per_block: 1, attention_head_dim: 2, norm_num_groups: 4, cross_attention_dim: 32 },
      { seed: 7 },
    );
    const backbone = DiffusionBackbone.fromComponents({
      unet,
      vae: await AutoencoderKL.fromPretrained(path.join(TINY, 'vae'), { parts: 'encoder' }),
      textEncoder: await CLIPTextModel.fromPretrained(path.join(TINY, 'text_encoder')),
      tokenizer: await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer')),
    });
    const grounder = PngGrounder.create(backbone, { ...SMALL, eipa: { ...SMALL.eipa, gate_init: 0.1 }, decoder: { ...SMALL.decoder, num_layers: 1 } }, { seed: 8 });
    const { first, last, leaked } = await overfit(grounder, 16, 40, 1e-2);
    expect(last).toBeLessThan(0.1 * first);
    expect(leaked).toBe(0);
    grounder.dispose();
    backbone.dispose();
  }, 600_000);
});
