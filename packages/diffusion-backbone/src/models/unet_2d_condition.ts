import * as tf from '@tensorflow/tfjs-core';
import {
  Conv2d,
  ForwardContext,
  GroupNorm,
  ModelRuntime,
  ParameterModule,
  WeightScope,
  activation,
  applyGradientCheckpointing,
  applyGroupOffloading,
  check,
  hookedLeaf,
  isActivationName,
  isPositiveInt,
  saveModule,
  type ActivationName,
  type BlockHook,
  type GradientCheckpointingOptions,
  type HookedModule,
  type ModuleFiles,
  type PathMatch,
  type ShapeSpec,
} from '@png/core';
import { componentWeightsFile, openComponentFiles, openWeights, readConfigJson, type ComponentFilesOptions, type ComponentOptions } from '../component_files';
import { Attention, type AttentionProcessor } from './attention_processor';
import { TimestepEmbedding, Timesteps } from './embeddings';
import { DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, type CrossAttnCommon } from './unet_2d_blocks';

/** diffusers' `unet/config.json` (the keys this port reads; others are accepted when at their defaults). */
export interface UNet2DConditionConfig {
  readonly sample_size?: number | readonly number[] | null;
  readonly in_channels: number;
  readonly out_channels: number;
  readonly center_input_sample: boolean;
  readonly flip_sin_to_cos: boolean;
  readonly freq_shift: number;
  readonly down_block_types: readonly string[];
  readonly mid_block_type: string | null;
  readonly up_block_types: readonly string[];
  readonly only_cross_attention: boolean | readonly boolean[];
  readonly block_out_channels: readonly number[];
  readonly layers_per_block: number | readonly number[];
  readonly downsample_padding: number;
  readonly mid_block_scale_factor: number;
  readonly act_fn: string;
  readonly norm_num_groups: number;
  readonly norm_eps: number;
  readonly cross_attention_dim: number;
  readonly transformer_layers_per_block: number | readonly number[];
  /** diffusers quirk kept from SD: when num_attention_heads is null this is the number of heads. */
  readonly attention_head_dim: number | readonly number[];
  readonly num_attention_heads: number | readonly number[] | null;
  readonly use_linear_projection: boolean;
  readonly upcast_attention: boolean;
  readonly conv_in_kernel: number;
  readonly conv_out_kernel: number;
  readonly [key: string]: unknown;
}

const DOWN_BLOCK_TYPES = ['CrossAttnDownBlock2D', 'DownBlock2D'];
const UP_BLOCK_TYPES = ['CrossAttnUpBlock2D', 'UpBlock2D'];

/** diffusers' defaults for the fields this port reads. */
const DEFAULT_UNET_2D_CONDITION_CONFIG: UNet2DConditionConfig = {
  sample_size: null,
  in_channels: 4,
  out_channels: 4,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  only_cross_attention: false,
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  act_fn: 'silu',
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280,
  transformer_layers_per_block: 1,
  attention_head_dim: 8,
  num_attention_heads: null,
  use_linear_projection: false,
  upcast_attention: false,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
};

/** Fields of diffusers' config that this port does not implement, with the value it requires. */
const UNSUPPORTED_UNLESS: Record<string, unknown> = {
  dual_cross_attention: false,
  class_embed_type: null,
  addition_embed_type: null,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  time_cond_proj_dim: null,
  time_embedding_type: 'positional',
  time_embedding_dim: null,
  time_embedding_act_fn: null,
  timestep_post_act: null,
  resnet_time_scale_shift: 'default',
  resnet_skip_time_act: false,
  resnet_out_scale_factor: 1,
  num_class_embeds: null,
  projection_class_embeddings_input_dim: null,
  class_embeddings_concat: false,
  mid_block_only_cross_attention: null,
  cross_attention_norm: null,
  attention_type: 'default',
  reverse_transformer_layers_per_block: null,
  addition_time_embed_dim: null,
};

/** SD v1.5's `unet/config.json` (runwayml/stable-diffusion-v1-5). */
export const SD15_UNET_CONFIG: UNet2DConditionConfig = Object.freeze({
  ...DEFAULT_UNET_2D_CONDITION_CONFIG,
  sample_size: 64,
  cross_attention_dim: 768,
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
});

/** Per-block values after broadcasting scalars, as diffusers' constructor does. */
interface ResolvedUNet {
  readonly config: UNet2DConditionConfig;
  readonly heads: number[];
  readonly layers: number[];
  readonly transformerLayers: number[];
  readonly onlyCrossAttention: boolean[];
  readonly act: ActivationName;
}

function perBlock<T>(value: T | readonly T[], n: number, field: string): T[] {
  if (Array.isArray(value)) {
    check(value.length === n, 'UNet2DConditionConfig', field, `one value per down block (${n})`, value);
    return [...value];
  }
  return Array(n).fill(value);
}

/** Fills diffusers' defaults into a parsed config.json and checks it, before any weight exists. */
export function resolveUNetConfig(json: Record<string, unknown>): ResolvedUNet {
  const name = 'UNet2DConditionConfig';
  const config = { ...DEFAULT_UNET_2D_CONDITION_CONFIG, ...json } as UNet2DConditionConfig;
  for (const [field, required] of Object.entries(UNSUPPORTED_UNLESS)) {
    const v = config[field];
    if (v !== undefined && JSON.stringify(v) !== JSON.stringify(required)) check(false, name, field, `${JSON.stringify(required)} (other values are not implemented)`, v);
  }
  const n = config.block_out_channels.length;
  check(Array.isArray(config.block_out_channels) && n > 0 && config.block_out_channels.every(isPositiveInt), name, 'block_out_channels', 'a non-empty list of positive integers', config.block_out_channels);
  check(config.down_block_types.length === n, name, 'down_block_types', `one type per entry of block_out_channels (${n})`, config.down_block_types);
  check(config.up_block_types.length === n, name, 'up_block_types', `one type per entry of block_out_channels (${n})`, config.up_block_types);
  config.down_block_types.forEach((t) => check(DOWN_BLOCK_TYPES.includes(t), name, 'down_block_types', `types from ${DOWN_BLOCK_TYPES.join(', ')}`, t));
  config.up_block_types.forEach((t) => check(UP_BLOCK_TYPES.includes(t), name, 'up_block_types', `types from ${UP_BLOCK_TYPES.join(', ')}`, t));
  check(config.mid_block_type === null || config.mid_block_type === 'UNetMidBlock2DCrossAttn', name, 'mid_block_type', "'UNetMidBlock2DCrossAttn' or null", config.mid_block_type);
  check(isActivationName(config.act_fn), name, 'act_fn', 'a known activation (silu, gelu, …)', config.act_fn);
  check(isPositiveInt(config.in_channels), name, 'in_channels', 'a positive integer', config.in_channels);
  check(isPositiveInt(config.out_channels), name, 'out_channels', 'a positive integer', config.out_channels);
  check(isPositiveInt(config.cross_attention_dim), name, 'cross_attention_dim', 'a positive integer (per-block lists are not implemented)', config.cross_attention_dim);
  check(isPositiveInt(config.norm_num_groups), name, 'norm_num_groups', 'a positive integer', config.norm_num_groups);
  check(config.conv_in_kernel % 2 === 1 && config.conv_out_kernel % 2 === 1, name, 'conv_in_kernel', 'odd kernel sizes', [config.conv_in_kernel, config.conv_out_kernel]);
  for (const c of config.block_out_channels) {
    check(c % config.norm_num_groups === 0, name, 'norm_num_groups', `a divisor of every block_out_channels entry (${c})`, config.norm_num_groups);
  }
  const headsField = config.num_attention_heads === null ? 'attention_head_dim' : 'num_attention_heads';
  const heads = perBlock(config.num_attention_heads ?? config.attention_head_dim, n, headsField);
  heads.forEach((h, i) => {
    check(isPositiveInt(h) && config.block_out_channels[i] % h === 0, name, headsField, `a head count dividing block_out_channels[${i}] (${config.block_out_channels[i]})`, h);
  });
  const layers = perBlock(config.layers_per_block, n, 'layers_per_block');
  layers.forEach((l) => check(isPositiveInt(l), name, 'layers_per_block', 'positive integers', l));
  const transformerLayers = perBlock(config.transformer_layers_per_block, n, 'transformer_layers_per_block');
  transformerLayers.forEach((l) => check(isPositiveInt(l), name, 'transformer_layers_per_block', 'positive integers', l));
  const onlyCrossAttention = perBlock(config.only_cross_attention, n, 'only_cross_attention');
  return { config, heads, layers, transformerLayers, onlyCrossAttention, act: config.act_fn as ActivationName };
}

export type UNet2DConditionOutput = {
  /** The noise prediction [B, H, W, out_channels]. */
  readonly sample: tf.Tensor4D;
  /** Tensors that hooks put into `context.outputs` (feature taps, adapter states). */
  readonly outputs: Record<string, tf.Tensor>;
};

export interface UNetForwardOptions {
  /** Per-forward state for processors and hooks. */
  readonly context?: ForwardContext;
  /** Key mask over the context tokens [B, M] (1 = attend). */
  readonly encoderAttentionMask?: tf.Tensor2D;
}

/**
 * diffusers `UNet2DConditionModel` (SD v1.x / v2.x), NHWC. Weights keep diffusers' names; the
 * attention math is swappable per `<path>.processor` and every block can be hooked by path.
 */
export class UNet2DConditionModel extends ParameterModule {
  readonly conv_in: Conv2d;
  readonly time_proj: Timesteps;
  readonly time_embedding: TimestepEmbedding;
  readonly down_blocks: DownBlock2D[] = [];
  readonly mid_block?: UNetMidBlock2DCrossAttn;
  readonly up_blocks: UpBlock2D[] = [];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  readonly config: UNet2DConditionConfig;
  private readonly runtime = new ModelRuntime();
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  /** Builds the module tree from a resolved config; use fromPretrained or create. */
  private constructor(scope: WeightScope, r: ResolvedUNet) {
    super();
    const c = r.config;
    const ch = c.block_out_channels;
    const n = ch.length;
    const rt = this.runtime;
    this.config = c;
    this.act = activation(r.act);
    const tembDim = ch[0] * 4;
    const common = { resnetEps: c.norm_eps, resnetGroups: c.norm_num_groups, act: r.act, tembChannels: tembDim };
    const crossAttn = (i: number): CrossAttnCommon => ({
      heads: r.heads[i],
      crossAttentionDim: c.cross_attention_dim,
      transformerLayers: r.transformerLayers[i],
      useLinearProjection: c.use_linear_projection,
      onlyCrossAttention: r.onlyCrossAttention[i],
    });

    this.conv_in = new Conv2d(scope.pp('conv_in'), c.in_channels, ch[0], c.conv_in_kernel, { padding: (c.conv_in_kernel - 1) / 2 });
    this.time_proj = new Timesteps(scope.pp('time_proj'), rt, ch[0], c.flip_sin_to_cos, c.freq_shift);
    this.time_embedding = new TimestepEmbedding(scope.pp('time_embedding'), rt, ch[0], tembDim, r.act);

    let out = ch[0];
    c.down_block_types.forEach((type, i) => {
      const inCh = out;
      out = ch[i];
      this.down_blocks.push(
        new DownBlock2D(scope.pp('down_blocks').pp(i), rt, {
          ...common,
          numLayers: r.layers[i],
          inChannels: inCh,
          outChannels: out,
          addDownsample: i < n - 1,
          downsamplePadding: c.downsample_padding,
          crossAttn: type === 'CrossAttnDownBlock2D' ? crossAttn(i) : undefined,
        }),
      );
    });

    if (c.mid_block_type !== null) {
      this.mid_block = new UNetMidBlock2DCrossAttn(scope.pp('mid_block'), rt, { ...common, ...crossAttn(n - 1), numLayers: 1, inChannels: ch[n - 1], outputScaleFactor: c.mid_block_scale_factor });
    }

    const rev = [...ch].reverse();
    let prevOut = rev[0];
    c.up_block_types.forEach((type, i) => {
      const j = n - 1 - i; // the matching down block
      this.up_blocks.push(
        new UpBlock2D(scope.pp('up_blocks').pp(i), rt, {
          ...common,
          numLayers: r.layers[j] + 1,
          inChannels: rev[Math.min(i + 1, n - 1)],
          prevOutputChannels: prevOut,
          outChannels: rev[i],
          addUpsample: i < n - 1,
          crossAttn: type === 'CrossAttnUpBlock2D' ? crossAttn(j) : undefined,
        }),
      );
      prevOut = rev[i];
    });

    this.conv_norm_out = new GroupNorm(scope.pp('conv_norm_out'), c.norm_num_groups, ch[0], c.norm_eps);
    this.conv_out = new Conv2d(scope.pp('conv_out'), ch[0], c.out_channels, c.conv_out_kernel, { padding: (c.conv_out_kernel - 1) / 2 });
  }

  /**
   * Loads `dir` (the `unet/` folder of a diffusers pipeline: config.json +
   * diffusion_pytorch_model[.variant].safetensors). Weights are frozen tf.Tensors.
   */
  static async fromPretrained(dir: string, options: ComponentOptions = {}): Promise<UNet2DConditionModel> {
    const resolved = resolveUNetConfig(await readConfigJson(dir));
    const source = await openWeights(dir, 'diffusion_pytorch_model', options);
    try {
      return UNet2DConditionModel.build(WeightScope.fromSource(source), resolved);
    } finally {
      source.close();
    }
  }

  /** As fromPretrained, from the contents of the folder's files (browsers: see DiffusionBackbone.fromUrl). */
  static fromFiles(files: ModuleFiles, options: ComponentFilesOptions = {}): UNet2DConditionModel {
    const { config, source } = openComponentFiles(files, 'diffusion_pytorch_model', 'unet', options);
    return UNet2DConditionModel.build(WeightScope.fromSource(source), resolveUNetConfig(config));
  }

  /** A UNet of `config` with fresh (seeded, torch-default-initialised) frozen weights. */
  static create(config: Partial<UNet2DConditionConfig> | Record<string, unknown>, options: { seed?: number; trainable?: boolean } = {}): UNet2DConditionModel {
    return UNet2DConditionModel.build(WeightScope.fresh({ seed: options.seed ?? 0, trainable: options.trainable ?? false }), resolveUNetConfig(config));
  }

  /** Writes `dir` as a diffusers `unet/` folder (config.json + diffusion_pytorch_model.safetensors). */
  async save(dir: string): Promise<void> {
    await saveModule(dir, { _class_name: 'UNet2DConditionModel', ...this.config }, this.parameters, { format: 'pt' }, componentWeightsFile('diffusion_pytorch_model'));
  }

  private static build(scope: WeightScope, resolved: ResolvedUNet): UNet2DConditionModel {
    const { module, params } = scope.build((s) => new UNet2DConditionModel(s, resolved));
    module.adopt(params);
    return module;
  }

  /** Input pixels per latent pixel at the bottom of the UNet: 2^(number of downsamplers). */
  get downsampleFactor(): number {
    return 2 ** (this.config.block_out_channels.length - 1);
  }

  /**
   * One denoising step's noise prediction. sample [B, H, W, in_channels] (NHWC latents, H and W
   * multiples of `downsampleFactor`), timestep a number, one per sample, or a [B] tensor, context
   * [B, M, cross_attention_dim]. Caller owns the returned tensors; inputs are not disposed.
   */
  forward(sample: tf.Tensor4D, timestep: number | readonly number[] | tf.Tensor1D, encoderHiddenStates: tf.Tensor3D, options: UNetForwardOptions = {}): UNet2DConditionOutput {
    this.assertAlive();
    this.checkInputs(sample, timestep, encoderHiddenStates, options.encoderAttentionMask);
    const context = options.context ?? new ForwardContext();
    return tf.tidy('UNet2DConditionModel.forward', () => {
      // 1. time
      const b = sample.shape[0];
      const timesteps = timestep instanceof tf.Tensor ? timestep : typeof timestep === 'number' ? new Array<number>(b).fill(timestep) : timestep;
      const emb = this.time_embedding.forward(this.time_proj.forward(timesteps, context), context); // [B, 4·C0]

      // 2. pre-process
      let h = this.config.center_input_sample ? (tf.sub(tf.mul(sample, 2), 1) as tf.Tensor4D) : sample;
      h = hookedLeaf(this.runtime, 'conv_in', h, context, (t) => this.conv_in.forward(t));

      // 3. down
      const args = { encoderHiddenStates, encoderAttentionMask: options.encoderAttentionMask, context };
      const skips: tf.Tensor4D[] = [h];
      for (const block of this.down_blocks) {
        const { hidden, resSamples } = block.forward(h, emb, args);
        h = hidden;
        skips.push(...resSamples);
      }

      // 4. mid
      if (this.mid_block) h = this.mid_block.forward(h, emb, args);

      // 5. up
      for (const block of this.up_blocks) h = block.forward(h, skips.splice(-block.resnets.length), emb, args);

      // 6. post-process
      h = hookedLeaf(this.runtime, 'conv_norm_out', h, context, (t) => this.conv_norm_out.forward(t));
      const out = hookedLeaf(this.runtime, 'conv_out', this.act(h) as tf.Tensor4D, context, (t) => this.conv_out.forward(t));
      return { sample: out, outputs: { ...context.outputs } };
    });
  }

  /** Attention processors keyed `<attention path>.processor`, as diffusers' `attn_processors`. */
  attnProcessors(): Record<string, AttentionProcessor> {
    return Object.fromEntries(this.attentions().map((attn) => [`${attn.path}.processor`, attn.processor]));
  }

  /**
   * Sets one processor everywhere, or one per key of `attnProcessors()` (then every key must be
   * given, as in diffusers).
   */
  setAttnProcessor(processor: AttentionProcessor | Record<string, AttentionProcessor>): void {
    if (typeof processor === 'function') {
      for (const attn of this.attentions()) attn.processor = processor;
      return;
    }
    const expected = Object.keys(this.attnProcessors());
    const missing = expected.filter((k) => !(k in processor));
    const unknown = Object.keys(processor).filter((k) => !expected.includes(k));
    if (missing.length || unknown.length) {
      throw new Error(
        `setAttnProcessor: a processor map must cover exactly the ${expected.length} keys of attnProcessors()` +
          (missing.length ? `; missing ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` and ${missing.length - 3} more` : ''}` : '') +
          (unknown.length ? `; unknown ${unknown.slice(0, 3).join(', ')}` : ''),
      );
    }
    for (const attn of this.attentions()) attn.processor = processor[`${attn.path}.processor`];
  }

  private attentions(): Attention[] {
    return [...this.runtime.modules.values()].filter((m): m is Attention => m instanceof Attention);
  }

  /** Runs `hook` around every module whose dotted path matches; returns the function that removes it. */
  addBlockHook(match: PathMatch, hook: BlockHook): () => void {
    return this.runtime.hooks.add(match, hook);
  }

  /**
   * Keeps the weights of every down, mid and up block in host memory and uploads each block's
   * weights only while it runs (wasm or cpu backend; see `applyGroupOffloading`). Needed to run SD
   * v1.5 on wasm32, whose 4 GiB heap cannot hold the weights and what a forward allocates beside
   * them. Outputs are bit-identical. For training, enable gradient checkpointing too: then a block's
   * weights are uploaded again while its gradient is computed. Returns the function that turns
   * offloading off again.
   */
  enableSequentialOffload(): Promise<() => void> {
    return applyGroupOffloading(this.blocks(), this.parameters);
  }

  /**
   * Gradient checkpointing of the down, mid and up blocks (diffusers'
   * `enable_gradient_checkpointing`; see `applyGradientCheckpointing`): each block keeps only its
   * inputs for the gradient and runs again in the backward. Outputs are bit-identical; gradients
   * equal up to float rounding, also through what hooks write into the forward's context. Enabling
   * it again replaces the options. Returns the function that turns it off.
   */
  enableGradientCheckpointing(options: GradientCheckpointingOptions = {}): () => void {
    return applyGradientCheckpointing(this.blocks(), options);
  }

  /** The down, mid and up blocks, in the order they run. */
  private blocks(): HookedModule[] {
    return [...this.down_blocks, ...(this.mid_block ? [this.mid_block] : []), ...this.up_blocks];
  }

  /** Paths of the transformer blocks with their width and latent stride (where adapters attach). */
  transformerBlocks(): Array<{ path: string; channels: number; stride: number }> {
    const out: Array<{ path: string; channels: number; stride: number }> = [];
    const add = (blocks: { attentions: { path: string; transformer_blocks: { path: string; attn1: { to_q: { inFeatures: number } } }[] }[] }, stride: number) => {
      for (const t of blocks.attentions) for (const tb of t.transformer_blocks) out.push({ path: tb.path, channels: tb.attn1.to_q.inFeatures, stride });
    };
    this.down_blocks.forEach((b, i) => add(b, 2 ** i));
    if (this.mid_block) add(this.mid_block, this.downsampleFactor);
    this.up_blocks.forEach((b, i) => add(b, this.downsampleFactor / 2 ** i));
    return out;
  }

  /**
   * Channels and latent stride at which each up block works (its hidden state before its
   * upsampler), known before any forward: the levels a feature pyramid taps.
   */
  upBlockShapes(): Record<string, ShapeSpec> {
    const rev = [...this.config.block_out_channels].reverse();
    return Object.fromEntries(rev.map((c, i) => [`up_blocks.${i}`, { channels: c, stride: this.downsampleFactor / 2 ** i }]));
  }

  private checkInputs(sample: tf.Tensor, timestep: number | readonly number[] | tf.Tensor, ehs: tf.Tensor, mask?: tf.Tensor): void {
    const c = this.config;
    const f = this.downsampleFactor;
    if (sample.rank !== 4 || sample.shape[3] !== c.in_channels) {
      throw new Error(`UNet2DConditionModel.forward: sample must be NHWC [B, H, W, ${c.in_channels}], got [${sample.shape}]`);
    }
    const [b, h, w] = sample.shape;
    if (h % f !== 0 || w % f !== 0) {
      throw new Error(`UNet2DConditionModel.forward: latent size ${h}×${w} is not a multiple of the UNet's downsampling factor ${f}; resize or pad the image to a multiple of vae_scale_factor × ${f} pixels (the VAE's downsampling times the UNet's; DiffusionBackbone.imageMultiple)`);
    }
    if (ehs.rank !== 3 || ehs.shape[0] !== b || ehs.shape[2] !== c.cross_attention_dim) {
      throw new Error(`UNet2DConditionModel.forward: encoderHiddenStates must be [${b}, M, ${c.cross_attention_dim}], got [${ehs.shape}]`);
    }
    if (mask && (mask.rank !== 2 || mask.shape[0] !== b || mask.shape[1] !== ehs.shape[1])) {
      throw new Error(`UNet2DConditionModel.forward: encoderAttentionMask must be [${b}, ${ehs.shape[1]}], got [${mask.shape}]`);
    }
    const tCount = typeof timestep === 'number' ? b : timestep instanceof tf.Tensor ? timestep.size : timestep.length;
    if (tCount !== b) throw new Error(`UNet2DConditionModel.forward: ${tCount} timesteps for a batch of ${b}`);
  }
}
