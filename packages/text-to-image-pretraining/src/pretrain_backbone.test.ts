import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import { pretrainBackbone, type BackboneArchitecture, type PretrainSettings } from './pretrain_backbone';

/** A very small architecture at 16×16 so that pretraining runs in seconds. */
const MICRO: BackboneArchitecture = {
  unet: {
    sample_size: 8,
    block_out_channels: [8, 16],
    down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
    layers_per_block: 1,
    attention_head_dim: 2,
    cross_attention_dim: 16,
    norm_num_groups: 4,
  },
  vae: {
    sample_size: 16,
    block_out_channels: [8, 16],
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'],
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'],
    latent_channels: 4,
    norm_num_groups: 4,
  },
  text_encoder: { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 77, projection_dim: 16 },
};

const SETTINGS: Partial<PretrainSettings> = {
  scenes: 24,
  image_size: 16,
  vocab_size: 600,
  vae_steps: 80,
  vae_batch_size: 4,
  unet_steps: 6,
  unet_batch_size: 4,
  warmup_steps: 2,
  checkpoint_every: 2,
};

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'png-pretrain-'));
const weightFiles = [
  'unet/diffusion_pytorch_model.safetensors',
  'vae/diffusion_pytorch_model.safetensors',
  'text_encoder/model.safetensors',
  'tokenizer/vocab.json',
  'tokenizer/merges.txt',
];

describe('pretrainBackbone (wasm)', () => {
  beforeAll(() => setBackend('wasm'));

  let reference: string;
  let referenceResult: Awaited<ReturnType<typeof pretrainBackbone>>;
  beforeAll(async () => {
    reference = path.join(tmp(), 'micro-sd');
    referenceResult = await pretrainBackbone({ out: reference, settings: SETTINGS, architecture: MICRO });
  }, 120_000);

  it('writes a diffusers pipeline folder that DiffusionBackbone loads and samples from', async () => {
    for (const f of [...weightFiles, 'model_index.json', 'scheduler/scheduler_config.json', 'pretraining.json'])
      expect(fs.existsSync(path.join(reference, f))).toBe(true);
    expect(fs.existsSync(`${reference}.work`)).toBe(false); // the work folder goes once the model is written
    const backbone = await DiffusionBackbone.fromPretrained(reference, { vaeParts: 'all' });
    expect(backbone.vae.config.scaling_factor).toBe(referenceResult.scalingFactor);
    expect(backbone.schedulerConfig.beta_schedule).toBe('scaled_linear');
    expect(backbone.textEncoder.config.vocab_size).toBe(referenceResult.vocabularySize);
    const images = backbone.generate('a red circle on the grass', { numInferenceSteps: 2 });
    expect(images.shape).toEqual([1, 16, 16, 3]);
    tf.dispose(images);
    backbone.dispose();
    const summary = JSON.parse(fs.readFileSync(path.join(reference, 'pretraining.json'), 'utf8'));
    expect(summary.settings.unet_steps).toBe(6);
    expect(summary.parameters).toEqual(referenceResult.parameters);
  });

  it('trains: every loss is finite and the VAE reconstruction improves', () => {
    const { vaeLosses, unetLosses } = referenceResult;
    expect(vaeLosses).toHaveLength(80);
    expect(unetLosses).toHaveLength(6);
    for (const l of [...vaeLosses, ...unetLosses]) expect(Number.isFinite(l)).toBe(true);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(vaeLosses.slice(-5))).toBeLessThan(0.8 * mean(vaeLosses.slice(0, 5)));
  });

  it('is deterministic and resumes an interrupted run to the same weights, bit for bit', async () => {
    const out = path.join(tmp(), 'micro-sd');
    const interrupt = new Error('interrupted');
    await expect(
      pretrainBackbone({
        out,
        settings: SETTINGS,
        architecture: MICRO,
        onProgress: (p) => {
          if (p.stage === 'unet' && p.done === 3) throw interrupt; // after the step-2 checkpoint
        },
      }),
    ).rejects.toBe(interrupt);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(path.join(`${out}.work`, 'unet'))).toEqual(['checkpoint-2']);
    const resumed = await pretrainBackbone({ out, settings: SETTINGS, architecture: MICRO });
    expect(resumed.unetLosses).toEqual(referenceResult.unetLosses);
    for (const f of weightFiles) expect(fs.readFileSync(path.join(out, f)).equals(fs.readFileSync(path.join(reference, f)))).toBe(true);
  }, 120_000);

  it('refuses bad settings and a work folder of other settings, naming the field', async () => {
    const out = path.join(tmp(), 'x');
    await expect(pretrainBackbone({ out, settings: { unet_stepz: 3 } as never })).rejects.toThrow(/unet_stepz.*did you mean 'unet_steps'/);
    await expect(pretrainBackbone({ out, settings: { scenes: 2, vae_batch_size: 4 } })).rejects.toThrow(/PretrainSettings\.scenes/);
    await expect(pretrainBackbone({ out, settings: { caption_dropout: 1 } })).rejects.toThrow(/caption_dropout/);
    await expect(pretrainBackbone({ out, settings: { ...SETTINGS, image_size: 18 }, architecture: MICRO })).rejects.toThrow(
      /image_size 18 is not a multiple of 4 \(the VAE's and the UNet's downsampling together\)/,
    );
    expect(fs.existsSync(`${out}.work`)).toBe(false); // a failed start leaves nothing
    fs.mkdirSync(`${out}.work`, { recursive: true });
    fs.writeFileSync(path.join(`${out}.work`, 'run.json'), '{"settings": {}}\n');
    await expect(pretrainBackbone({ out, settings: SETTINGS, architecture: MICRO })).rejects.toThrow(
      /run\.json: this folder holds a run started with another settings .*remove .*\.work/,
    );
  });
});
