import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend, type LoadProgress } from '@png/core';
import { FOLDER_FETCH_BASE, FixtureIndex, expectClose, expectNoLeak, folderFetch, sharedFixturesDir } from '@png/core/testing';
import { DiffusionBackbone } from './pipeline_stable_diffusion';
import { EncoderFeatureTaps, FeatureTaps } from './feature_taps';
import { AutoencoderKL } from './models/autoencoder_kl';
import { CLIPTextModel } from './clip/modeling_clip';
import { saveClipTokenizerFiles } from './clip/tokenization_clip';

const TINY = path.join(sharedFixturesDir(), 'tiny-sd');

describe('DiffusionBackbone (wasm)', () => {
  let backbone: DiffusionBackbone;
  beforeAll(async () => {
    await setBackend('wasm');
    backbone = await DiffusionBackbone.fromPretrained(TINY);
  });
  afterAll(() => backbone.dispose());

  it('loads the four components of a pipeline folder and encodes captions like the references', async () => {
    const refs = new FixtureIndex(TINY);
    const captions = (refs.index.captions as string[]).slice(0, 2);
    const text = backbone.encodeText(captions);
    expect(text.hiddenStates.shape).toEqual([2, 77, 32]);
    const ids = await text.inputIds.data();
    expect([...ids.slice(0, 77)]).toEqual([...refs.read('text/caption0.input_ids').data]);
    const h0 = tf.slice(text.hiddenStates, [0, 0, 0], [1, -1, -1]);
    await expectClose(h0, refs.read('text/caption0.last_hidden_state').data, 1e-4, 'caption0');
    tf.dispose([text, h0]);
    expect(backbone.imageMultiple).toBe(2 * 4);
  });

  it('taps the up-path levels with their image strides, and does not leak', async () => {
    const taps = new FeatureTaps(backbone.unet, { imageStride: backbone.vae.downsampleFactor });
    const image = tf.randomUniform([1, 64, 48, 3], -1, 1, 'float32', 3) as tf.Tensor4D;
    const latents = backbone.encodeImages(image);
    expect(latents.shape).toEqual([1, 32, 24, 4]);
    const text = backbone.encodeText(['a photo of a dog']);
    const { sample, outputs } = backbone.unet.forward(latents, 1, text.hiddenStates);
    const pyramid = taps.pyramid(outputs);
    expect(pyramid.map((f) => [f.name, f.stride, f.tensor.shape])).toEqual([
      ['up_blocks.0', 8, [1, 8, 6, 32]],
      ['up_blocks.1', 4, [1, 16, 12, 32]],
      ['up_blocks.2', 2, [1, 32, 24, 16]],
    ]);
    tf.dispose([image, latents, text, sample, outputs]);
    const small = tf.zeros([1, 16, 16, 3]) as tf.Tensor4D;
    await expectNoLeak(() => {
      const t = backbone.encodeText(['x']);
      const l = backbone.encodeImages(small);
      const out = backbone.unet.forward(l, 1, t.hiddenStates);
      return [t, l, out];
    }, 'backbone forward with taps');
    small.dispose();
    taps.remove();
  });

  it('taps the VAE encoder blocks before their downsampler, with image strides, leaving the latents as they were', async () => {
    const { vae } = backbone;
    expect(vae.encoderBlockShapes()).toEqual({ 'encoder.down_blocks.0': { channels: 32, stride: 1 }, 'encoder.down_blocks.1': { channels: 64, stride: 2 } });
    const image = tf.randomUniform([2, 16, 12, 3], -1, 1, 'float32', 4) as tf.Tensor4D;
    const plain = vae.encode(image);
    const taps = new EncoderFeatureTaps(vae);
    // what the taps must see: block 0's last resnet (its downsampler's input), block 1's output
    const removeCapture = vae.addBlockHook((p) => p === 'encoder.down_blocks.0.resnets.0' || p === 'encoder.down_blocks.1', {
      postForward: (p, out, ctx) => {
        ctx.outputs[`${p}.out`] = out;
      },
    });
    const tapped = vae.encode(image);
    removeCapture();
    const pyramid = taps.pyramid(tapped.outputs);
    expect(pyramid.map((f) => [f.name, f.stride, f.tensor.shape])).toEqual([
      ['encoder.down_blocks.1', 2, [2, 8, 6, 64]],
      ['encoder.down_blocks.0', 1, [2, 16, 12, 32]],
    ]);
    expect(await pyramid[1].tensor.data()).toEqual(await tapped.outputs['encoder.down_blocks.0.resnets.0.out'].data());
    expect(await pyramid[0].tensor.data()).toEqual(await tapped.outputs['encoder.down_blocks.1.out'].data());
    expect(await tapped.mean.data()).toEqual(await plain.mean.data());
    tf.dispose([plain, tapped]);
    await expectNoLeak(() => vae.encode(image), 'vae.encode with encoder taps');
    expect(() => new EncoderFeatureTaps(vae, { levels: ['encoder.down_blocks.2'] })).toThrow(
      "EncoderFeatureTaps: 'encoder.down_blocks.2' is not a down block of this VAE encoder (encoder.down_blocks.0, encoder.down_blocks.1)",
    );
    taps.remove();
    const after = vae.encode(image);
    expect(() => taps.pyramid(after.outputs)).toThrow("EncoderFeatureTaps: no 'encoder.down_blocks.1' in these outputs");
    tf.dispose([after, image]);
  });

  it('loads by URL (fromUrl, as browsers do) the same weights and tokenizer as fromPretrained, with errors naming the URL', async () => {
    const fetch = folderFetch(path.dirname(TINY));
    const url = `${FOLDER_FETCH_BASE}tiny-sd`;
    const fetched = await DiffusionBackbone.fromUrl(url, { fetch });
    expect(fetch.requested.filter((u) => u.includes('/tokenizer/')).sort()).toEqual(
      ['merges.txt', 'special_tokens_map.json', 'tokenizer_config.json', 'vocab.json'].map((f) => `${url}/tokenizer/${f}`),
    );
    for (const component of ['unet', 'vae', 'textEncoder'] as const) {
      const [mine, theirs] = [fetched[component].parameters, backbone[component].parameters];
      expect(mine.keys().sort()).toEqual(theirs.keys().sort());
      for (const key of theirs.keys())
        expect(Buffer.from((await mine.get(key).data()).buffer).equals(Buffer.from((await theirs.get(key).data()).buffer))).toBe(true);
    }
    const [a, b] = [backbone, fetched].map((m) => m.encodeText(['two red squares on the grass']));
    expect([...(await b.inputIds.data())]).toEqual([...(await a.inputIds.data())]);
    tf.dispose([a, b]);
    fetched.dispose();

    // vae/ and text_encoder/ have no fp16 variant here
    await expect(DiffusionBackbone.fromUrl(url, { fetch, variant: 'fp16' })).rejects.toThrow(
      `${url}/vae/diffusion_pytorch_model.fp16.safetensors: HTTP 404 Not Found`,
    );
    const read = (f: string) => fs.readFileSync(path.join(TINY, f));
    const files = {
      unet: { config: read('unet/config.json').toString(), weights: read('unet/diffusion_pytorch_model.safetensors') },
      vae: { config: read('vae/config.json').toString(), weights: read('vae/diffusion_pytorch_model.safetensors') },
      textEncoder: { config: read('text_encoder/config.json').toString(), weights: read('vae/diffusion_pytorch_model.safetensors') }, // the wrong file
      tokenizer: { vocab: read('tokenizer/vocab.json').toString(), merges: read('tokenizer/merges.txt').toString() },
    };
    const live = tf.memory().numTensors;
    expect(() => DiffusionBackbone.fromFiles(files, { name: 'https://x/sd' })).toThrow(/^https:\/\/x\/sd\/text_encoder\/model\.safetensors: /);
    expect(tf.memory().numTensors).toBe(live); // the UNet and VAE loaded before the failure are freed
  });

  it('reports its loading progress per weights file (progressCallback)', async () => {
    const events: LoadProgress[] = [];
    const loaded = await DiffusionBackbone.fromPretrained(TINY, { progressCallback: (p) => events.push(p) });
    loaded.dispose();
    const files = [...new Set(events.map((e) => path.relative(TINY, e.file)))];
    expect(files).toEqual(['unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors']);
    for (const file of files) {
      const own = events.filter((e) => path.relative(TINY, e.file) === file);
      const bytes = fs.readFileSync(path.join(TINY, file));
      const dataBytes = bytes.length - 8 - Number(bytes.readBigUInt64LE(0)); // after the length prefix and the JSON header
      expect(own.every((e, i) => e.total === dataBytes && e.loaded > (i ? own[i - 1].loaded : 0))).toBe(true);
      // the VAE loads only its encoder (vaeParts 'encoder'): it stops short of the file
      const last = own[own.length - 1].loaded;
      if (file.startsWith('vae/')) expect(last).toBeLessThan(dataBytes);
      else expect(last).toBe(dataBytes);
    }
  });

  it('says which component folders are missing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipe-'));
    fs.mkdirSync(path.join(dir, 'unet'));
    await expect(DiffusionBackbone.fromPretrained(dir)).rejects.toThrow(/not a diffusers pipeline folder; missing vae\/, text_encoder\/, tokenizer\//);
    fs.rmSync(dir, { recursive: true });
  });

  it('names the path and what was expected where a component file is a folder', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipe-folders-'));
    for (const part of ['vae', 'text_encoder', 'tokenizer']) fs.mkdirSync(path.join(dir, part));
    const unet = path.join(dir, 'unet');
    fs.mkdirSync(path.join(unet, 'config.json'), { recursive: true });
    await expect(DiffusionBackbone.fromPretrained(dir)).rejects.toThrow(`${path.join(unet, 'config.json')}: is a folder; expected a component config (JSON)`);
    fs.rmSync(path.join(unet, 'config.json'), { recursive: true });
    fs.copyFileSync(path.join(TINY, 'unet', 'config.json'), path.join(unet, 'config.json'));
    fs.mkdirSync(path.join(unet, 'diffusion_pytorch_model.safetensors'));
    await expect(DiffusionBackbone.fromPretrained(dir)).rejects.toThrow(
      `${path.join(unet, 'diffusion_pytorch_model.safetensors')}: is a folder; expected a safetensors weights file`,
    );
    fs.rmSync(dir, { recursive: true });
  });

  it('writes a pipeline folder from its components (save) that loads back bit for bit', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipe-save-'));
    const vae = await AutoencoderKL.fromPretrained(path.join(TINY, 'vae'));
    const text = await CLIPTextModel.fromPretrained(path.join(TINY, 'text_encoder'));
    try {
      await backbone.unet.save(path.join(dir, 'unet'));
      await vae.save(path.join(dir, 'vae'));
      await text.save(path.join(dir, 'text_encoder'));
      const read = (f: string) => fs.readFileSync(path.join(TINY, 'tokenizer', f), 'utf8');
      await saveClipTokenizerFiles(path.join(dir, 'tokenizer'), {
        vocab: read('vocab.json'),
        merges: read('merges.txt'),
        tokenizerConfig: read('tokenizer_config.json'),
        specialTokensMap: read('special_tokens_map.json'),
      });
      const copy = await DiffusionBackbone.fromPretrained(dir, { vaeParts: 'all' });
      const image = tf.randomUniform([1, 16, 16, 3], -1, 1, 'float32', 5) as tf.Tensor4D;
      const [a, b] = [vae, copy.vae].map((v) => v.decode(backbone.encodeImages(image)));
      await expectClose(b, await a.data(), 0, 'decoded by the saved VAE');
      const [ta, tb] = [backbone, copy].map((m) => m.encodeText(['two red squares on the grass']));
      await expectClose(tb.hiddenStates, await ta.hiddenStates.data(), 0, 'saved text encoder');
      expect(copy.unet.numParameters()).toBe(backbone.unet.numParameters());
      tf.dispose([image, a, b, ta, tb]);
      copy.dispose();
      const encoderOnly = await AutoencoderKL.fromPretrained(path.join(TINY, 'vae'), { parts: 'encoder' });
      await expect(encoderOnly.save(path.join(dir, 'x'))).rejects.toThrow(/parts 'encoder' \(no decoder\); a vae\/ folder needs parts 'all'/);
      encoderOnly.dispose();
    } finally {
      vae.dispose();
      text.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('generates images (DDIM + guidance): seeded, in [0, 1], without leaks; bad options are named', async () => {
    const full = await DiffusionBackbone.fromPretrained(TINY, { vaeParts: 'all' });
    try {
      expect(full.schedulerConfig.beta_schedule).toBe('scaled_linear'); // no scheduler/ folder: SD's schedule
      const a = full.generate(['a red circle', 'a blue square'], { numInferenceSteps: 3, height: 32, width: 16, seed: 7 });
      expect(a.shape).toEqual([2, 32, 16, 3]);
      const values = await a.data();
      expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...values)).toBeLessThanOrEqual(1);
      const again = full.generate(['a red circle', 'a blue square'], { numInferenceSteps: 3, height: 32, width: 16, seed: 7 });
      await expectClose(again, values, 0, 'same seed');
      const unguided = full.generate(['a red circle', 'a blue square'], { numInferenceSteps: 3, height: 32, width: 16, seed: 7, guidanceScale: 1 });
      expect(await unguided.data()).not.toEqual(values);
      tf.dispose([a, again, unguided]);
      await expectNoLeak(() => full.generate('a ring', { numInferenceSteps: 2, height: 16, width: 16, eta: 1 }), 'generate');
      expect(() => full.generate([], {})).toThrow(/no prompt/);
      expect(() => full.generate('x', { height: 20, width: 16 })).toThrow(/height 20 is not a positive multiple of 8/);
      expect(() => full.generate(['x', 'y'], { negativePrompt: ['z'], height: 16, width: 16 })).toThrow(/1 negative prompts for 2 prompts/);
      expect(() => full.generate('x', { numInferenceSteps: 0, height: 16, width: 16 })).toThrow(/numInferenceSteps must be an integer in \[1, 1000\]/);
    } finally {
      full.dispose();
    }
    expect(() => backbone.generate('x')).toThrow(/without its decoder; load the backbone with vaeParts: 'all'/);
  });

  it('reads scheduler/scheduler_config.json, naming the file when a field is bad', async () => {
    const read = (f: string) => fs.readFileSync(path.join(TINY, f));
    const files = (schedulerConfig: string) => ({
      unet: { config: read('unet/config.json').toString(), weights: read('unet/diffusion_pytorch_model.safetensors') },
      vae: { config: read('vae/config.json').toString(), weights: read('vae/diffusion_pytorch_model.safetensors') },
      textEncoder: { config: read('text_encoder/config.json').toString(), weights: read('text_encoder/model.safetensors') },
      tokenizer: { vocab: read('tokenizer/vocab.json').toString(), merges: read('tokenizer/merges.txt').toString() },
      schedulerConfig,
    });
    // SD v1.5's own file (a PNDMScheduler config): its foreign fields are accepted
    const sd15 = DiffusionBackbone.fromFiles(
      files(
        JSON.stringify({
          _class_name: 'PNDMScheduler',
          _diffusers_version: '0.6.0',
          beta_end: 0.012,
          beta_schedule: 'scaled_linear',
          beta_start: 0.00085,
          num_train_timesteps: 1000,
          set_alpha_to_one: false,
          skip_prk_steps: true,
          steps_offset: 1,
          trained_betas: null,
          clip_sample: false,
        }),
      ),
    );
    expect(sd15.schedulerConfig.steps_offset).toBe(1);
    sd15.dispose();
    const live = tf.memory().numTensors;
    expect(() => DiffusionBackbone.fromFiles(files('{"beta_schedule": "cosine"}'), { name: 'sd' })).toThrow(
      /^sd\/scheduler\/scheduler_config\.json: .*beta_schedule/,
    );
    expect(() => DiffusionBackbone.fromFiles(files('[1]'), { name: 'sd' })).toThrow(/^sd\/scheduler\/scheduler_config\.json: expected a JSON object/);
    expect(tf.memory().numTensors).toBe(live);
  });
});
