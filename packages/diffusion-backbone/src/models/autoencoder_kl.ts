import * as tf from '@tensorflow/tfjs-core';
import {
  Conv2d,
  ForwardContext,
  ModelRuntime,
  ParameterModule,
  WeightScope,
  check,
  hookedLeaf,
  isActivationName,
  isFiniteNumber,
  isPositiveInt,
  saveModule,
  type ActivationName,
  type BlockHook,
  type ModuleFiles,
  type PathMatch,
  type ShapeSpec,
} from '@png/core';
import { componentWeightsFile, openComponentFiles, openWeights, readConfigJson, type ComponentFilesOptions, type ComponentOptions } from '../component_files';
import { Decoder, DiagonalGaussianDistribution, Encoder, type DecoderUpBlockType, type EncoderDownBlockType } from './vae';

/** diffusers' `vae/config.json` for `AutoencoderKL` (v0.25.1 fields; other keys are kept as they are). */
export interface AutoencoderKLConfig {
  readonly in_channels: number;
  readonly out_channels: number;
  readonly down_block_types: readonly EncoderDownBlockType[];
  readonly up_block_types: readonly DecoderUpBlockType[];
  readonly block_out_channels: readonly number[];
  readonly layers_per_block: number;
  readonly act_fn: ActivationName;
  readonly latent_channels: number;
  readonly norm_num_groups: number;
  /** Only used by diffusers' tiled encode/decode, which this port does not have. */
  readonly sample_size: number | readonly number[];
  /** Latents fed to the UNet are `mean × scaling_factor`. */
  readonly scaling_factor: number;
  /** diffusers runs the VAE in fp32 when set; this port always computes in fp32. */
  readonly force_upcast: boolean;
  readonly [key: string]: unknown;
}

const CONFIG_NAME = 'AutoencoderKLConfig';
const DOWN_BLOCK_TYPES: readonly string[] = ['DownEncoderBlock2D'] satisfies EncoderDownBlockType[];
const UP_BLOCK_TYPES: readonly string[] = ['UpDecoderBlock2D'] satisfies DecoderUpBlockType[];

/** diffusers' defaults (AutoencoderKL.__init__ in v0.25.1). */
export const DEFAULT_AUTOENCODER_KL_CONFIG: AutoencoderKLConfig = Object.freeze<AutoencoderKLConfig>({
  in_channels: 3,
  out_channels: 3,
  down_block_types: ['DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D'],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: 'silu',
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
  force_upcast: true,
});

/** SD v1.5's `vae/config.json` (runwayml/stable-diffusion-v1-5) with diffusers' defaults filled in. */
export const SD15_VAE_CONFIG: AutoencoderKLConfig = Object.freeze<AutoencoderKLConfig>({
  ...DEFAULT_AUTOENCODER_KL_CONFIG,
  down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  block_out_channels: [128, 256, 512, 512],
  layers_per_block: 2,
  sample_size: 512,
});

/**
 * Fields that later diffusers versions added, accepted only at the value that means v0.25.1's
 * behaviour (a different value changes the model or its latents, which this port does not do).
 */
const LATER_FIELDS_REQUIRED: Record<string, unknown> = {
  mid_block_add_attention: true,
  use_quant_conv: true,
  use_post_quant_conv: true,
  latents_mean: null,
  latents_std: null,
  shift_factor: null,
};

const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((t) => typeof t === 'string');

/**
 * Fills diffusers' defaults into a parsed `config.json` and validates it, before any weight
 * exists. Throws a ConfigError (`Error in AutoencoderKLConfig.<field>: …`) naming the field.
 */
export function resolveAutoencoderKLConfig(json: Partial<AutoencoderKLConfig> | Record<string, unknown>): AutoencoderKLConfig {
  const c = { ...DEFAULT_AUTOENCODER_KL_CONFIG, ...json } as Record<string, unknown>;
  const name = CONFIG_NAME;
  check(c._class_name === undefined || c._class_name === 'AutoencoderKL', name, '_class_name', "'AutoencoderKL' (this folder holds another model)", c._class_name);
  for (const [field, required] of Object.entries(LATER_FIELDS_REQUIRED)) {
    if (c[field] !== undefined) check(JSON.stringify(c[field]) === JSON.stringify(required), name, field, `${JSON.stringify(required)} (other values are not implemented)`, c[field]);
  }
  for (const field of ['in_channels', 'out_channels', 'layers_per_block', 'latent_channels', 'norm_num_groups']) {
    check(isPositiveInt(c[field]), name, field, 'a positive integer', c[field]);
  }
  const ch = c.block_out_channels;
  check(Array.isArray(ch) && ch.length > 0 && ch.every(isPositiveInt), name, 'block_out_channels', 'a non-empty list of positive integers', ch);
  const channels = ch as number[];
  const groups = c.norm_num_groups as number;
  for (const n of channels) check(n % groups === 0, name, 'block_out_channels', `channel counts divisible by norm_num_groups (${groups})`, ch);
  const levels = channels.length;
  for (const [field, known] of [
    ['down_block_types', DOWN_BLOCK_TYPES],
    ['up_block_types', UP_BLOCK_TYPES],
  ] as const) {
    const types = c[field];
    check(isStringList(types) && types.length === levels, name, field, `a list of ${levels} block types, one per entry of block_out_channels`, types);
    for (const t of types as string[]) check(known.includes(t), name, field, `block types from ${known.join(', ')}`, t);
  }
  check(isActivationName(c.act_fn), name, 'act_fn', 'a known activation (silu, gelu, relu, …)', c.act_fn);
  const size = c.sample_size;
  check(isPositiveInt(size) || (Array.isArray(size) && size.length === 2 && size.every(isPositiveInt)), name, 'sample_size', 'a positive integer or [height, width]', size);
  check(isFiniteNumber(c.scaling_factor) && c.scaling_factor > 0, name, 'scaling_factor', 'a positive number', c.scaling_factor);
  check(typeof c.force_upcast === 'boolean', name, 'force_upcast', 'a boolean', c.force_upcast);
  return Object.freeze(c) as AutoencoderKLConfig;
}

/** Which modules to build: 'encoder' (encoder + quant_conv; what PNG needs) or 'all'. */
export type AutoencoderKLParts = 'encoder' | 'all';

export interface AutoencoderKLLoadOptions extends ComponentOptions {
  /** Default 'all'. With 'encoder', the checkpoint's decoder.* and post_quant_conv.* are skipped. */
  readonly parts?: AutoencoderKLParts;
}

export interface AutoencoderKLForwardOptions {
  /** Per-forward state for hooks; hooks may put tensors into `context.outputs`. */
  readonly context?: ForwardContext;
}

/** The posterior of `encode`: N(mean, std²) per latent element. Caller owns every tensor. */
export type AutoencoderKLEncodeOutput = {
  readonly mean: tf.Tensor4D; // [B, h, w, latent_channels]
  /** Clamped to [-30, 20]. */
  readonly logvar: tf.Tensor4D; // [B, h, w, latent_channels]
  /** exp(0.5 · logvar). */
  readonly std: tf.Tensor4D; // [B, h, w, latent_channels]
  /** Tensors that hooks put into `context.outputs` (e.g. captured block outputs). */
  readonly outputs: Record<string, tf.Tensor>;
};

const PARTS: readonly AutoencoderKLParts[] = ['encoder', 'all'];

/**
 * diffusers `AutoencoderKL` (SD's VAE), NHWC. Weights keep diffusers' names (`encoder.…`,
 * `quant_conv.…`, `post_quant_conv.…`, `decoder.…`) and are frozen tf.Tensors. Every module can
 * be hooked by its dotted path (`addBlockHook`).
 */
export class AutoencoderKL extends ParameterModule {
  readonly encoder: Encoder;
  readonly quant_conv: Conv2d;
  /** Absent when built with parts: 'encoder'. */
  readonly post_quant_conv?: Conv2d;
  /** Absent when built with parts: 'encoder'. */
  readonly decoder?: Decoder;
  /** The resolved config (diffusers' defaults filled in), frozen. */
  readonly config: AutoencoderKLConfig;
  /** Which modules were built. */
  readonly parts: AutoencoderKLParts;
  private readonly runtime = new ModelRuntime();

  /** Builds the module tree from a resolved config; use fromPretrained or create. */
  private constructor(scope: WeightScope, config: AutoencoderKLConfig, parts: AutoencoderKLParts) {
    super();
    const c = config;
    const common = { blockOutChannels: c.block_out_channels, layersPerBlock: c.layers_per_block, normNumGroups: c.norm_num_groups, act: c.act_fn };
    this.config = c;
    this.parts = parts;
    this.encoder = new Encoder(scope.pp('encoder'), this.runtime, {
      ...common,
      inChannels: c.in_channels,
      outChannels: c.latent_channels,
      downBlockTypes: c.down_block_types,
      doubleZ: true,
    });
    this.quant_conv = new Conv2d(scope.pp('quant_conv'), 2 * c.latent_channels, 2 * c.latent_channels, 1);
    if (parts === 'all') {
      this.post_quant_conv = new Conv2d(scope.pp('post_quant_conv'), c.latent_channels, c.latent_channels, 1);
      this.decoder = new Decoder(scope.pp('decoder'), this.runtime, {
        ...common,
        inChannels: c.latent_channels,
        outChannels: c.out_channels,
        upBlockTypes: c.up_block_types,
      });
    }
  }

  /**
   * Loads `dir` (the `vae/` folder of a diffusers pipeline: config.json +
   * diffusion_pytorch_model[.variant].safetensors), strictly: a missing or mis-shaped tensor is
   * an error naming the key and both shapes. `parts: 'encoder'` builds only encoder + quant_conv.
   */
  static async fromPretrained(dir: string, options: AutoencoderKLLoadOptions = {}): Promise<AutoencoderKL> {
    const parts = checkParts(options.parts);
    const config = resolveAutoencoderKLConfig(await readConfigJson(dir));
    const source = await openWeights(dir, 'diffusion_pytorch_model', options);
    try {
      const ignore = parts === 'encoder' ? [/^decoder\./, /^post_quant_conv\./] : [];
      return AutoencoderKL.build(WeightScope.fromSource(source, { ignore }), config, parts);
    } finally {
      source.close();
    }
  }

  /** As fromPretrained, from the contents of the folder's files (browsers: see DiffusionBackbone.fromUrl). */
  static fromFiles(files: ModuleFiles, options: AutoencoderKLLoadOptions & ComponentFilesOptions = {}): AutoencoderKL {
    const parts = checkParts(options.parts);
    const { config, source } = openComponentFiles(files, 'diffusion_pytorch_model', 'vae', options);
    const ignore = parts === 'encoder' ? [/^decoder\./, /^post_quant_conv\./] : [];
    return AutoencoderKL.build(WeightScope.fromSource(source, { ignore }), resolveAutoencoderKLConfig(config), parts);
  }

  /** An AutoencoderKL of `config` (diffusers' defaults fill the rest) with fresh, seeded weights. */
  static create(
    config: Partial<AutoencoderKLConfig> | Record<string, unknown>,
    options: { seed?: number; trainable?: boolean; parts?: AutoencoderKLParts } = {},
  ): AutoencoderKL {
    const parts = checkParts(options.parts);
    const resolved = resolveAutoencoderKLConfig(config);
    return AutoencoderKL.build(WeightScope.fresh({ seed: options.seed ?? 0, trainable: options.trainable ?? false }), resolved, parts);
  }

  /** Writes `dir` as a diffusers `vae/` folder (config.json + diffusion_pytorch_model.safetensors). Needs the whole model (parts 'all'). */
  async save(dir: string): Promise<void> {
    this.assertAlive();
    if (this.parts !== 'all') throw new Error(`AutoencoderKL.save: this model was built with parts '${this.parts}' (no decoder); a vae/ folder needs parts 'all'`);
    await saveModule(dir, { _class_name: 'AutoencoderKL', ...this.config }, this.parameters, { format: 'pt' }, componentWeightsFile('diffusion_pytorch_model'));
  }

  private static build(scope: WeightScope, config: AutoencoderKLConfig, parts: AutoencoderKLParts): AutoencoderKL {
    const { module, params } = scope.build((s) => new AutoencoderKL(s, config, parts));
    module.adopt(params);
    return module;
  }

  /** Image pixels per latent pixel: 2^(number of levels − 1) (8 for SD). */
  get downsampleFactor(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  /**
   * Channels and image stride at which each encoder down block works (its hidden state before its
   * downsampler; the last block's output), known before any forward: the levels EncoderFeatureTaps taps.
   */
  encoderBlockShapes(): Record<string, ShapeSpec> {
    return Object.fromEntries(this.config.block_out_channels.map((c, i) => [`encoder.down_blocks.${i}`, { channels: c, stride: 2 ** i }]));
  }

  /**
   * The posterior of `image` [B, H, W, in_channels] (NHWC, values in [-1, 1], H and W multiples
   * of `downsampleFactor`): mean, clamped logvar and std, each [B, H/f, W/f, latent_channels].
   * Caller owns the returned tensors; the input is not disposed.
   */
  encode(image: tf.Tensor4D, options: AutoencoderKLForwardOptions = {}): AutoencoderKLEncodeOutput {
    this.assertAlive();
    this.checkImage('encode', image);
    const context = options.context ?? new ForwardContext();
    return tf.tidy('AutoencoderKL.encode', () => {
      const { mean, logvar, std } = this.posterior(image, context);
      return { mean, logvar, std, outputs: { ...context.outputs } };
    });
  }

  /**
   * The UNet's latents, PNG's default: the posterior mean × scaling_factor, deterministic
   * (no sampling). [B, H, W, in_channels] → [B, H/f, W/f, latent_channels]. Caller owns the result.
   */
  latents(image: tf.Tensor4D, options: AutoencoderKLForwardOptions = {}): tf.Tensor4D {
    this.assertAlive();
    this.checkImage('latents', image);
    const context = options.context ?? new ForwardContext();
    return tf.tidy('AutoencoderKL.latents', () => tf.mul(this.posterior(image, context).mean, this.config.scaling_factor) as tf.Tensor4D);
  }

  /**
   * One draw from the posterior, mean + std·ε, unscaled like diffusers' `latent_dist.sample()`
   * (multiply by scaling_factor for the UNet). ε comes from tfjs' generator seeded with `seed`.
   */
  sample(image: tf.Tensor4D, seed?: number, options: AutoencoderKLForwardOptions = {}): tf.Tensor4D {
    this.assertAlive();
    this.checkImage('sample', image);
    const context = options.context ?? new ForwardContext();
    return tf.tidy('AutoencoderKL.sample', () => this.posterior(image, context).sample(seed));
  }

  /**
   * Decodes unscaled latents z [B, h, w, latent_channels] (divide UNet latents by
   * scaling_factor first, as diffusers' pipelines do) into an image [B, h·f, w·f, out_channels]
   * in about [-1, 1]. Needs parts: 'all'. Caller owns the result.
   */
  decode(z: tf.Tensor4D, options: AutoencoderKLForwardOptions = {}): tf.Tensor4D {
    this.assertAlive();
    const { decoder, post_quant_conv: postQuantConv } = this;
    if (!decoder || !postQuantConv) throw new Error("AutoencoderKL.decode: this model was built with parts: 'encoder' (no decoder); load it with parts: 'all' to decode");
    const c = this.config.latent_channels;
    if (z.rank !== 4 || z.shape[3] !== c) throw new Error(`AutoencoderKL.decode: z must be NHWC latents [B, h, w, ${c}], got [${z.shape}]`);
    if (z.dtype !== 'float32') throw new Error(`AutoencoderKL.decode: z must be float32, got ${z.dtype}`);
    const context = options.context ?? new ForwardContext();
    return tf.tidy('AutoencoderKL.decode', () => {
      const h = hookedLeaf(this.runtime, 'post_quant_conv', z, context, (t) => postQuantConv.forward(t));
      return decoder.forward(h, context);
    });
  }

  /** Runs `hook` around every module whose dotted path matches (e.g. 'encoder.down_blocks.0'); returns the remover. */
  addBlockHook(match: PathMatch, hook: BlockHook): () => void {
    return this.runtime.hooks.add(match, hook);
  }




  /** encoder → quant_conv → posterior. Call inside tf.tidy. */
  private posterior(image: tf.Tensor4D, context: ForwardContext): DiagonalGaussianDistribution {
    const h = this.encoder.forward(image, context); // [B, h, w, 2·latent]
    return new DiagonalGaussianDistribution(hookedLeaf(this.runtime, 'quant_conv', h, context, (t) => this.quant_conv.forward(t)));
  }


  private checkImage(method: string, image: tf.Tensor): void {
    const c = this.config.in_channels;
    const where = `AutoencoderKL.${method}`;
    if (image.rank !== 4 || image.shape[3] !== c) {
      const nchw = image.rank === 4 && image.shape[1] === c;
      throw new Error(
        `${where}: image must be NHWC [B, H, W, ${c}] with values in [-1, 1], got [${image.shape}]` +
          (nchw ? `; it looks NCHW, transpose it with tf.transpose(image, [0, 2, 3, 1])` : ''),
      );
    }
    if (image.dtype !== 'float32') throw new Error(`${where}: image must be float32 in [-1, 1], got ${image.dtype}; convert 0–255 pixels with x / 127.5 − 1`);
    const [, h, w] = image.shape;
    const f = this.downsampleFactor;
    if (h % f !== 0 || w % f !== 0) {
      throw new Error(`${where}: image size ${h}×${w} (shape [${image.shape}]) is not a multiple of ${f}, the VAE's downsampling factor; resize or pad H and W to multiples of ${f}`);
    }
  }
}

function checkParts(parts: AutoencoderKLParts | undefined): AutoencoderKLParts {
  const p = parts ?? 'all';
  if (!PARTS.includes(p)) throw new Error(`AutoencoderKL: parts must be one of ${PARTS.map((x) => `'${x}'`).join(', ')}, got ${JSON.stringify(parts)}`);
  return p;
}
