/**
 * Pretrains a tiny Stable-Diffusion-architecture backbone from scratch on synthetic scenes and
 * their narratives — the recipe of SD at toy scale — and writes it as a diffusers pipeline folder
 * that `DiffusionBackbone.fromPretrained` loads like any real checkpoint:
 *
 *   1. a CLIP BPE vocabulary learnt from the narratives (tokenizer/);
 *   2. the AutoencoderKL: L1 reconstruction + KL (vae/), its scaling_factor set to 1/std of the latents;
 *   3. the UNet and the CLIP text encoder jointly, DDPM ε-prediction on SD's scaled-linear noise
 *      schedule with classifier-free-guidance dropout of the caption (unet/, text_encoder/);
 *   4. scheduler/scheduler_config.json (DDIM, SD's schedule) and model_index.json.
 *
 * Deterministic from the seed (single-threaded backends). Resumable: the work folder `<out>.work`
 * keeps a checkpoint of the running stage; rerunning with the same settings continues there.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { WeightScope, check, seededNormal, isFiniteNumber, isPositiveInt, resolveConfig, saveModule } from '@png/core';
import { Prng, writeFileAtomic } from '@png/node-utils';
import {
  AutoencoderKL,
  CLIPTextModel,
  CLIPTokenizer,
  DDPMScheduler,
  SD_SCHEDULER_CONFIG,
  UNet2DConditionModel,
  saveClipTokenizerFiles,
  type AutoencoderKLConfig,
  type CLIPTextConfig,
  type UNet2DConditionConfig,
} from '@png/diffusion-backbone';
import { synthesizeScene } from '@png/png-data';
import { BatchOrder, Trainer, guardRun, runTrainingLoop, trainableVariables, warmupPoly } from '@png/training';
import { trainClipBpe } from './bpe_trainer';
import { autoencoderKLLoss } from './train_autoencoder_kl';
import { textToImageLoss } from './train_text_to_image';

/** The architecture of a pretrained backbone (diffusers / transformers config fields). */
export interface BackboneArchitecture {
  readonly unet: Partial<UNet2DConditionConfig>;
  readonly vae: Partial<AutoencoderKLConfig>;
  /** vocab_size and the special token ids come from the learnt tokenizer. */
  readonly text_encoder: Omit<Partial<CLIPTextConfig>, 'vocab_size' | 'bos_token_id' | 'eos_token_id' | 'pad_token_id'>;
}

/** The embedded default: 64×64 images, 16×16×4 latents, 64-wide text features. */
export const TINY_SD_ARCHITECTURE: BackboneArchitecture = Object.freeze({
  unet: {
    sample_size: 16,
    block_out_channels: [32, 64, 64],
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    layers_per_block: 1,
    attention_head_dim: 4,
    cross_attention_dim: 64,
    norm_num_groups: 16,
  },
  vae: {
    sample_size: 64,
    block_out_channels: [16, 32, 64],
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
    latent_channels: 4,
    norm_num_groups: 8,
  },
  text_encoder: {
    hidden_size: 64,
    intermediate_size: 256,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    max_position_embeddings: 77,
    projection_dim: 64,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
  },
} as BackboneArchitecture);

/** Pretraining settings (snake_case, as saved in pretraining.json). */
export interface PretrainSettings {
  /** Seed of the scenes, the initialisations, the data order and every noise draw. */
  readonly seed: number;
  /** Synthetic training scenes (each with 1–2 narratives). */
  readonly scenes: number;
  /** Image side in pixels (a multiple of the VAE's and the UNet's downsampling together). */
  readonly image_size: number;
  /** Upper bound of the learnt BPE vocabulary. */
  readonly vocab_size: number;
  readonly vae_steps: number;
  readonly vae_batch_size: number;
  readonly vae_lr: number;
  /** LDM's kl_weight. */
  readonly kl_weight: number;
  readonly unet_steps: number;
  readonly unet_batch_size: number;
  readonly unet_lr: number;
  /** Probability that a caption is replaced by the empty caption (classifier-free guidance). */
  readonly caption_dropout: number;
  readonly warmup_steps: number;
  readonly weight_decay: number;
  readonly clip_grad_norm: number;
  readonly checkpoint_every: number;
}

export const DEFAULT_PRETRAIN_SETTINGS: PretrainSettings = Object.freeze({
  seed: 0,
  scenes: 6000,
  image_size: 64,
  vocab_size: 1024,
  vae_steps: 500,
  vae_batch_size: 8,
  vae_lr: 1e-3,
  kl_weight: 1e-6,
  unet_steps: 1500,
  unet_batch_size: 16,
  unet_lr: 1e-3,
  caption_dropout: 0.1,
  warmup_steps: 100,
  weight_decay: 1e-2,
  clip_grad_norm: 1,
  checkpoint_every: 100,
});

export function resolvePretrainSettings(user: Partial<PretrainSettings> | Record<string, unknown> = {}): PretrainSettings {
  const name = 'PretrainSettings';
  return resolveConfig(name, DEFAULT_PRETRAIN_SETTINGS, user, (c) => {
    check(Number.isInteger(c.seed), name, 'seed', 'an integer', c.seed);
    for (const key of ['scenes', 'image_size', 'vocab_size', 'vae_steps', 'vae_batch_size', 'unet_steps', 'unet_batch_size', 'checkpoint_every'] as const) {
      check(isPositiveInt(c[key]), name, key, 'a positive integer', c[key]);
    }
    for (const key of ['vae_lr', 'unet_lr', 'clip_grad_norm'] as const) check(isFiniteNumber(c[key]) && c[key] > 0, name, key, 'a number > 0', c[key]);
    for (const key of ['kl_weight', 'weight_decay'] as const) check(isFiniteNumber(c[key]) && c[key] >= 0, name, key, 'a number ≥ 0', c[key]);
    check(
      isFiniteNumber(c.caption_dropout) && c.caption_dropout >= 0 && c.caption_dropout < 1,
      name,
      'caption_dropout',
      'a number in [0, 1)',
      c.caption_dropout,
    );
    check(
      Number.isInteger(c.warmup_steps) && c.warmup_steps >= 0 && c.warmup_steps < Math.min(c.vae_steps, c.unet_steps),
      name,
      'warmup_steps',
      'an integer in [0, min(vae_steps, unet_steps))',
      c.warmup_steps,
    );
    check(c.vocab_size >= 514, name, 'vocab_size', 'an integer ≥ 514 (CLIP BPE: 512 byte symbols + 2 special tokens)', c.vocab_size);
    check(c.scenes >= c.vae_batch_size && c.scenes >= c.unet_batch_size, name, 'scenes', 'at least the larger batch size', c.scenes);
  });
}

/** What pretraining reports as it goes. */
export interface PretrainProgress {
  readonly stage: 'scenes' | 'vae' | 'latents' | 'unet';
  readonly done: number;
  readonly total: number;
  /** Mean loss of the last steps (vae, unet). */
  readonly loss?: number;
}

export interface PretrainOptions {
  /** The pipeline folder to write (replaced when pretraining finishes). */
  readonly out: string;
  readonly settings?: Partial<PretrainSettings>;
  readonly architecture?: BackboneArchitecture;
  readonly onProgress?: (progress: PretrainProgress) => void;
}

export interface PretrainResult {
  readonly out: string;
  readonly settings: PretrainSettings;
  /** Wall-clock seconds per stage (this run's; a resumed stage counts only the resumed part). */
  readonly seconds: Readonly<Record<'tokenizer' | 'vae' | 'latents' | 'unet' | 'total', number>>;
  readonly vaeLosses: readonly number[];
  readonly unetLosses: readonly number[];
  readonly scalingFactor: number;
  readonly vocabularySize: number;
  readonly parameters: Readonly<Record<'unet' | 'vae' | 'text_encoder', number>>;
}

/** Scene seeds of pretraining: a stream of their own, apart from `generateSyntheticBenchmark`'s splits. */
const SCENE_STREAM = 7919;

/** Pretrains the backbone of `options.architecture` (default TINY_SD_ARCHITECTURE) and writes `options.out`. */
export async function pretrainBackbone(options: PretrainOptions): Promise<PretrainResult> {
  const began = performance.now();
  const settings = resolvePretrainSettings(options.settings ?? {});
  const architecture = options.architecture ?? TINY_SD_ARCHITECTURE;
  const out = path.resolve(options.out);
  const work = `${out}.work`;
  const guard = guardRun(work, { settings, architecture });
  const report = options.onProgress ?? (() => {});
  const seconds = { tokenizer: 0, vae: 0, latents: 0, unet: 0, total: 0 };
  const seedOf = (stream: number, step = 0) => deriveStepSeed(settings.seed, stream, step);

  // Scenes and the vocabulary.
  let t0 = performance.now();
  const size = settings.image_size;
  const pixels = size * size * 3;
  const images = new Uint8Array(settings.scenes * pixels);
  const captions: string[][] = [];
  for (let i = 0; i < settings.scenes; i++) {
    const scene = synthesizeScene(seedOf(SCENE_STREAM, i), { size: [size, size] });
    images.set(scene.image, i * pixels);
    captions.push(scene.narratives.map((n) => n.caption));
    if ((i + 1) % 500 === 0 || i + 1 === settings.scenes) report({ stage: 'scenes', done: i + 1, total: settings.scenes });
  }
  const tokenizerFiles = trainClipBpe(captions.flat(), { vocabSize: settings.vocab_size });
  const tokenizer = CLIPTokenizer.fromFiles(tokenizerFiles);
  const ids = (texts: readonly string[]) => tokenizer.call(texts, { padding: 'max_length', truncation: true }).inputIds;
  const captionIds = captions.map((c) => ids(c));
  const emptyIds = ids([''])[0];
  seconds.tokenizer = (performance.now() - t0) / 1000;

  const imageBatch = (indices: readonly number[]): tf.Tensor4D => {
    const x = new Float32Array(indices.length * pixels);
    indices.forEach((s, b) => {
      for (let k = 0; k < pixels; k++) x[b * pixels + k] = images[s * pixels + k] / 127.5 - 1;
    });
    return tf.tensor4d(x, [indices.length, size, size, 3]);
  };

  // All three models are built before any training, so a bad architecture fails at once.
  const built: Array<{ dispose(): void }> = [];
  const keep = <T extends { dispose(): void }>(m: T): T => {
    built.push(m);
    return m;
  };
  try {
    const vae = keep(AutoencoderKL.create(architecture.vae, { seed: seedOf(1), trainable: true }));
    const unet = keep(
      UNet2DConditionModel.create(
        { ...architecture.unet, in_channels: vae.config.latent_channels, out_channels: vae.config.latent_channels },
        { seed: seedOf(4), trainable: true },
      ),
    );
    const textEncoder = keep(
      CLIPTextModel.fromScope(WeightScope.fresh({ seed: seedOf(5), trainable: true }), {
        ...architecture.text_encoder,
        vocab_size: tokenizer.vocabSize,
        bos_token_id: tokenizer.bosTokenId,
        eos_token_id: tokenizer.eosTokenId,
        pad_token_id: tokenizer.padTokenId,
      } as CLIPTextConfig),
    );
    if (size % (vae.downsampleFactor * unet.downsampleFactor) !== 0) {
      throw new Error(
        `pretrainBackbone: image_size ${size} is not a multiple of ${vae.downsampleFactor * unet.downsampleFactor} (the VAE's and the UNet's downsampling together)`,
      );
    }
    guard.record(); // the settings and the architecture are valid: the work folder starts here
    // The VAE.
    t0 = performance.now();
    const vaeLosses = await trainStage({
      dir: path.join(work, 'vae'),
      variables: trainableVariables(vae.parameters),
      steps: settings.vae_steps,
      lr: settings.vae_lr,
      settings,
      order: new BatchOrder(settings.scenes, settings.vae_batch_size, seedOf(2)),
      lossFn: (indices, step) => {
        const x = imageBatch(indices);
        try {
          return autoencoderKLLoss(vae, x, { klWeight: settings.kl_weight, seed: seedOf(3, step) });
        } finally {
          x.dispose();
        }
      },
      onStep: (done, loss) => report({ stage: 'vae', done, total: settings.vae_steps, loss }),
    });
    seconds.vae = (performance.now() - t0) / 1000;

    // Every image's posterior, and the scaling factor that gives the latents unit variance.
    t0 = performance.now();
    const latentShape = [size / vae.downsampleFactor, size / vae.downsampleFactor, vae.config.latent_channels];
    const latentSize = latentShape[0] * latentShape[1] * latentShape[2];
    const means = new Float32Array(settings.scenes * latentSize);
    const stds = new Float32Array(settings.scenes * latentSize);
    for (let start = 0; start < settings.scenes; start += 32) {
      const indices = Array.from({ length: Math.min(32, settings.scenes - start) }, (_, k) => start + k);
      const x = imageBatch(indices);
      const { mean, std, logvar } = vae.encode(x);
      means.set(await mean.data(), start * latentSize);
      stds.set(await std.data(), start * latentSize);
      tf.dispose([x, mean, std, logvar]);
      report({ stage: 'latents', done: start + indices.length, total: settings.scenes });
    }
    let m1 = 0,
      m2 = 0;
    for (let k = 0; k < means.length; k++) {
      m1 += means[k];
      m2 += means[k] * means[k] + stds[k] * stds[k];
    }
    m1 /= means.length;
    const scalingFactor = Math.fround(1 / Math.sqrt(m2 / means.length - m1 * m1)); // Var z = E[μ² + σ²] − (E μ)²
    seconds.latents = (performance.now() - t0) / 1000;

    // The UNet and the text encoder, jointly.
    t0 = performance.now();
    const scheduler = new DDPMScheduler(SD_SCHEDULER_CONFIG);
    const models = { unet, textEncoder, scheduler };
    const prefixed = (prefix: string, vars: Record<string, tf.Variable>) => Object.fromEntries(Object.entries(vars).map(([k, v]) => [`${prefix}.${k}`, v]));
    const unetLosses = await trainStage({
      dir: path.join(work, 'unet'),
      variables: { ...prefixed('unet', trainableVariables(unet.parameters)), ...prefixed('text_encoder', trainableVariables(textEncoder.parameters)) },
      steps: settings.unet_steps,
      lr: settings.unet_lr,
      settings,
      order: new BatchOrder(settings.scenes, settings.unet_batch_size, seedOf(6)),
      lossFn: (indices, step) => {
        const rng = new Prng(seedOf(7, step));
        const tokens = indices.map((s) => (rng.chance(settings.caption_dropout) ? emptyIds : rng.pick(captionIds[s])));
        const timesteps = indices.map(() => rng.int(0, scheduler.config.num_train_timesteps - 1));
        const mu = new Float32Array(indices.length * latentSize),
          sigma = new Float32Array(indices.length * latentSize);
        indices.forEach((s, b) => {
          mu.set(means.subarray(s * latentSize, (s + 1) * latentSize), b * latentSize);
          sigma.set(stds.subarray(s * latentSize, (s + 1) * latentSize), b * latentSize);
        });
        return tf.tidy(() => {
          const shape = [indices.length, ...latentShape] as [number, number, number, number];
          const draw = seededNormal(shape, seedOf(8, step));
          const latents = tf.mul(tf.add(tf.tensor4d(mu, shape), tf.mul(tf.tensor4d(sigma, shape), draw)), scalingFactor) as tf.Tensor4D; // (μ + σ·ε′) · scaling_factor
          const noise = seededNormal(shape, seedOf(9, step)) as tf.Tensor4D;
          const inputIds = tf.tensor2d(tokens, undefined, 'int32');
          return textToImageLoss(models, { latents, inputIds, timesteps, noise });
        });
      },
      onStep: (done, loss) => report({ stage: 'unet', done, total: settings.unet_steps, loss }),
    });
    seconds.unet = (performance.now() - t0) / 1000;

    // The pipeline folder: written beside `out`, then swapped in.
    const staging = `${out}.tmp-${process.pid}`;
    fs.rmSync(staging, { recursive: true, force: true });
    await unet.save(path.join(staging, 'unet'));
    await saveModule(
      path.join(staging, 'vae'),
      { _class_name: 'AutoencoderKL', ...vae.config, scaling_factor: scalingFactor },
      vae.parameters,
      { format: 'pt' },
      'diffusion_pytorch_model.safetensors',
    );
    await textEncoder.save(path.join(staging, 'text_encoder'));
    await saveClipTokenizerFiles(path.join(staging, 'tokenizer'), tokenizerFiles);
    writeJson(path.join(staging, 'scheduler', 'scheduler_config.json'), { _class_name: 'DDIMScheduler', ...scheduler.config });
    writeJson(path.join(staging, 'model_index.json'), {
      _class_name: 'StableDiffusionPipeline',
      scheduler: ['diffusers', 'DDIMScheduler'],
      text_encoder: ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
    });
    seconds.total = (performance.now() - began) / 1000;
    const parameters = { unet: unet.numParameters(), vae: vae.numParameters(), text_encoder: textEncoder.numParameters() };
    const summary = {
      settings,
      architecture,
      seconds,
      scaling_factor: scalingFactor,
      vocabulary_size: tokenizer.vocabSize,
      parameters,
      final_loss: { vae: meanOfLast(vaeLosses, 50), unet: meanOfLast(unetLosses, 50) },
    };
    writeJson(path.join(staging, 'pretraining.json'), summary);
    replaceFolder(staging, out);
    fs.rmSync(work, { recursive: true, force: true });
    return { out, settings, seconds, vaeLosses, unetLosses, scalingFactor, vocabularySize: tokenizer.vocabSize, parameters };
  } finally {
    for (const m of built) m.dispose();
  }
}

/** One resumable training stage: AdamW, warm-up + poly, clipping; checkpoints in `dir`. Returns every step's loss. */
async function trainStage(stage: {
  dir: string;
  variables: Record<string, tf.Variable>;
  steps: number;
  lr: number;
  settings: PretrainSettings;
  order: BatchOrder;
  lossFn: (indices: number[], step: number) => tf.Scalar;
  onStep: (done: number, recentLoss: number) => void;
}): Promise<number[]> {
  const { settings } = stage;
  const trainer = new Trainer<{ indices: number[]; step: number }>({
    variables: stage.variables,
    lossFn: ({ indices, step }) => stage.lossFn(indices, step),
    optimizer: { lr: stage.lr, weight_decay: settings.weight_decay, noDecay: (key) => /(bias|norm)/.test(key) },
    schedule: warmupPoly({ base_lr: stage.lr, warmup_steps: settings.warmup_steps, total_steps: stage.steps }),
    clip_grad_norm: settings.clip_grad_norm,
  });
  try {
    const { losses } = await runTrainingLoop({
      dir: stage.dir,
      trainer,
      steps: stage.steps,
      checkpointEvery: settings.checkpoint_every,
      batch: (step) => ({ indices: stage.order.batch(step), step }),
      onStep: ({ done, loss }) => stage.onStep(done, loss),
    });
    return losses;
  } finally {
    trainer.dispose();
  }
}

function deriveStepSeed(seed: number, stream: number, step: number): number {
  // splitmix-style mixing of (seed, stream, step) into 31 bits (tfjs seeds and Prng both take it)
  let h = (seed * 0x9e3779b1 + stream * 0x85ebca6b + step * 0xc2b2ae35) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) & 0x7fffffff;
}

function meanOfLast(values: readonly number[], n: number): number {
  const tail = values.slice(-n);
  return tail.reduce((a, b) => a + b, 0) / Math.max(1, tail.length);
}

function writeJson(file: string, value: unknown): void {
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Puts `staging` at `target`, replacing what was there (the old folder is removed only after the swap). */
function replaceFolder(staging: string, target: string): void {
  const old = `${target}.old-${process.pid}`;
  if (fs.existsSync(target)) fs.renameSync(target, old);
  fs.renameSync(staging, target);
  fs.rmSync(old, { recursive: true, force: true });
}
