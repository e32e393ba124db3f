import * as tf from '@tensorflow/tfjs-core';
import {
  CONFIG_FILE,
  WEIGHTS_FILE,
  check,
  parseJsonObject,
  fetchFile,
  fetchModuleFiles,
  isFiniteNumber,
  isNonNegativeInt,
  isPositiveInt,
  joinUrl,
  readInputFile,
  resolveConfig,
  seededNormal,
  type CaptionTokens,
  type FeatureMap,
  type FetchFunction,
  type ForwardContext,
  type ModuleFiles,
  type PhraseFeatures,
} from '@png/core';
import {
  DDPMScheduler,
  EncoderFeatureTaps,
  FeatureTaps,
  encodePhrases,
  type DiffusionBackbone,
  type EncodePhrasesOptions,
  type Narrative,
} from '@png/diffusion-backbone';
import { PhraseAdapter, attachEipa, type EipaAttachment, type EipaConfig } from '@png/eipa';
import { MultiLevelMutualAggregation, skipStrides, type MlmaConfig } from '@png/mlma';
import { writeFileAtomic } from '@png/node-utils';
import { unletterbox, type LetterboxTransform } from '@png/png-data';
import { PngDecoder, deepSupervisionLoss, type PngDecoderConfig } from '@png/png-decoder';
import { TextSide, type TextSideConfig } from './text_side';

/** What the frozen UNet's cross-attention reads (PngGrounderConfig.context). */
export type UNetContext = 'phrases' | 'caption' | 'both';

/** The grounding model's config.json: the trainable parts' configs and how the backbone is read. */
export interface PngGrounderConfig {
  readonly eipa: Partial<EipaConfig>;
  /** image_channels and phrase_dim are filled in from the UNet. */
  readonly mlma: Partial<MlmaConfig>;
  /** hidden_dim and mask_dim are filled in from MLMA. */
  readonly decoder: Partial<PngDecoderConfig>;
  /** UNet timestep the image is read at (DESIGN: 1). */
  readonly timestep: number;
  /** Seed of the DDPM noise added at `timestep`; null reads the clean latents (DESIGN default). */
  readonly noise_seed: number | null;
  readonly max_phrases: number;
  readonly bce_weight: number;
  readonly dice_weight: number;
  /** Weights of DETR's box loss (L1, GIoU) with decoder.box_head: 1 and 0.4, MaskDINO's box:mask ratio (5 and 2 against mask BCE 5, Dice 5). */
  readonly box_l1_weight: number;
  readonly box_giou_weight: number;
  /** Supervise every decoder layer's prediction (true) or only the last. */
  readonly deep_supervision: boolean;
  /**
   * null (default): the mask loss counts every target pixel. An object: Mask2Former's point loss,
   * `num_points` per mask (Mask2Former: 112²), `importance_sample_ratio` of them (0.75) the most
   * uncertain of `oversample_ratio` (3) × num_points uniform candidates (see PointSampling of
   * @png/png-decoder); `loss` then needs its `random`.
   */
  readonly point_loss: PointLossConfig | null;
  /**
   * Input pixels per mask pixel. null (default): the finest UNet level's stride (4 for the
   * embedded tiny SD, 8 for SD 1.5). A finer one (half of it, a quarter, …, down to 1) refines the
   * mask features with the frozen VAE encoder's blocks at each stride in between (MLMA skip levels).
   */
  readonly mask_stride: number | null;
  /**
   * What the frozen UNet's cross-attention reads. 'phrases' (default): the pooled phrase vectors
   * alone. 'caption': the caption's CLIP token states as SD reads a prompt (each window bos…eos
   * and padding). 'both': the caption tokens, then the phrase vectors. With EIPA's dynamic_prompt
   * the phrase slots read the current phrase state; 'caption' has none, so it needs
   * `eipa.dynamic_prompt: false`.
   */
  readonly context: UNetContext;
  /** Tokens each encoder window of a long caption repeats from the one before (default 0: hard 75-token windows). */
  readonly window_overlap: number;
  /** End a long caption's encoder windows after a sentence when one lies in the window (default false: at a word). */
  readonly sentence_windows: boolean;
  /** The trainable text side (TextSideConfig; text_dim is filled in from the UNet). Off by default: nothing to train, no text/ folder. */
  readonly text: Partial<TextSideConfig>;
}

/** PngGrounderConfig.point_loss: Mask2Former's point sampling of the mask loss. */
export interface PointLossConfig {
  readonly num_points: number;
  readonly oversample_ratio: number;
  readonly importance_sample_ratio: number;
}

/** The contents of the files of a folder written by `PngGrounder.save` (see PngGrounder.fromFiles). */
export interface PngGrounderFiles {
  /** config.json, as text. */
  readonly config: string;
  /** eipa/config.json and eipa/model.safetensors */
  readonly eipa: ModuleFiles;
  /** mlma/config.json and mlma/model.safetensors */
  readonly mlma: ModuleFiles;
  /** decoder/config.json and decoder/model.safetensors */
  readonly decoder: ModuleFiles;
  /** text/config.json and text/model.safetensors (only a grounder with a text side has them). */
  readonly text?: ModuleFiles;
}

export const DEFAULT_PNG_GROUNDER_CONFIG: PngGrounderConfig = Object.freeze({
  eipa: {},
  mlma: {},
  decoder: {},
  timestep: 1,
  noise_seed: null,
  max_phrases: 30,
  bce_weight: 1,
  dice_weight: 1,
  box_l1_weight: 1,
  box_giou_weight: 0.4,
  deep_supervision: true,
  point_loss: null,
  mask_stride: null,
  context: 'phrases',
  window_overlap: 0,
  sentence_windows: false,
  text: {},
});

export function resolvePngGrounderConfig(user: Partial<PngGrounderConfig> | Record<string, unknown> = {}): PngGrounderConfig {
  return resolveConfig('PngGrounderConfig', DEFAULT_PNG_GROUNDER_CONFIG, user, (c) => {
    check(isNonNegativeInt(c.timestep) && c.timestep < 1000, 'PngGrounderConfig', 'timestep', 'an integer in [0, 1000)', c.timestep);
    check(c.noise_seed === null || Number.isInteger(c.noise_seed), 'PngGrounderConfig', 'noise_seed', 'null or an integer', c.noise_seed);
    check(isPositiveInt(c.max_phrases), 'PngGrounderConfig', 'max_phrases', 'a positive integer', c.max_phrases);
    check(isFiniteNumber(c.bce_weight) && c.bce_weight >= 0, 'PngGrounderConfig', 'bce_weight', 'a non-negative number', c.bce_weight);
    check(isFiniteNumber(c.dice_weight) && c.dice_weight >= 0, 'PngGrounderConfig', 'dice_weight', 'a non-negative number', c.dice_weight);
    check(isFiniteNumber(c.box_l1_weight) && c.box_l1_weight >= 0, 'PngGrounderConfig', 'box_l1_weight', 'a non-negative number', c.box_l1_weight);
    check(isFiniteNumber(c.box_giou_weight) && c.box_giou_weight >= 0, 'PngGrounderConfig', 'box_giou_weight', 'a non-negative number', c.box_giou_weight);
    check(
      c.mask_stride === null || (isPositiveInt(c.mask_stride) && (c.mask_stride & (c.mask_stride - 1)) === 0),
      'PngGrounderConfig',
      'mask_stride',
      'null or a power of two (1, 2, 4, …)',
      c.mask_stride,
    );
    check(['phrases', 'caption', 'both'].includes(c.context), 'PngGrounderConfig', 'context', "'phrases', 'caption' or 'both'", c.context);
    check(
      isNonNegativeInt(c.window_overlap),
      'PngGrounderConfig',
      'window_overlap',
      'a non-negative integer (below the 75 tokens of a window)',
      c.window_overlap,
    );
    check(c.text !== null && !Array.isArray(c.text), 'PngGrounderConfig', 'text', 'an object of TextSideConfig fields', c.text);
    const points = c.point_loss;
    check(
      points === null ||
        (typeof points === 'object' &&
          !Array.isArray(points) &&
          Object.keys(points).every((k) => ['num_points', 'oversample_ratio', 'importance_sample_ratio'].includes(k)) &&
          isPositiveInt(points.num_points) &&
          isFiniteNumber(points.oversample_ratio) &&
          points.oversample_ratio >= 1 &&
          isFiniteNumber(points.importance_sample_ratio) &&
          points.importance_sample_ratio >= 0 &&
          points.importance_sample_ratio <= 1),
      'PngGrounderConfig',
      'point_loss',
      'null or { num_points: a positive integer, oversample_ratio: ≥ 1, importance_sample_ratio: in [0, 1] }',
      points === null ? null : JSON.stringify(points),
    );
  });
}

/** Whether a grounder with `config` reads the caption's token states (its context, or the text side's caption attention). */
function readsCaption(config: PngGrounderConfig): boolean {
  return config.context !== 'phrases' || config.text.caption_attention === true;
}

/**
 * How a grounder with `config` encodes narratives (`encodePhrases` options): its max_phrases, its
 * windows for long captions, the caption token states when it reads them, and each phrase's
 * sentence state with text.sentence_context. Caches of phrase
 * features (`encodeSamples`) take these.
 */
export function phraseEncoding(config: PngGrounderConfig): EncodePhrasesOptions {
  return {
    maxPhrases: config.max_phrases,
    windows: { overlap: config.window_overlap, sentences: config.sentence_windows },
    caption: readsCaption(config),
    sentence: config.text.sentence_context === true,
  };
}

/**
 * A test-time check that dynamic prompting is what it claims (`png evaluate --probe`):
 * - `zero_gates`: every EIPA update is dropped (each gate taken as 0, an ungated update's too): the
 *   UNet reads the static phrases and nothing is injected — static prompting with the same weights;
 * - `swap_phrases`: each image's EIPA phrase states are those its own phrases get over another
 *   image (`donors`, latents [B, h, w, C] like the forward's): the same phrases run through the
 *   adapted UNet over the donor image, and every adapted block of the image's own forward takes the
 *   donor forward's phrase state in place of its extract (the UNet's cross-attention, the inject
 *   and MLMA all read it). If the phrase states carry image-specific information, AR drops.
 */
export type EipaProbe = { readonly kind: 'zero_gates' } | { readonly kind: 'swap_phrases'; readonly donors: tf.Tensor4D };

/** A VAE encoder block that feeds an MLMA skip level. */
interface SkipLevel {
  readonly name: string;
  readonly channels: number;
  readonly stride: number;
}

/**
 * The VAE encoder blocks whose strides lie in [mask_stride, finest UNet stride), coarsest first:
 * the skip levels a grounder with `maskStride` reads (none for null or the finest UNet stride).
 */
function skipLevels(backbone: DiffusionBackbone, maskStride: number | null): SkipLevel[] {
  const f = backbone.vae.downsampleFactor;
  const finest = Math.min(...Object.values(backbone.unet.upBlockShapes()).map((l) => l.stride * f));
  const below = Object.entries(backbone.vae.encoderBlockShapes())
    .map(([name, s]) => ({ name, ...s }))
    .filter((l) => l.stride < finest)
    .sort((a, b) => b.stride - a.stride);
  const allowed = [finest, ...below.map((l) => l.stride)];
  check(
    maskStride === null || allowed.includes(maskStride),
    'PngGrounderConfig',
    'mask_stride',
    `null or one of ${allowed.join(', ')} for this backbone (its finest UNet level, or a VAE encoder block below it)`,
    maskStride,
  );
  return maskStride === null ? [] : below.filter((l) => l.stride >= maskStride);
}

/** What the frozen VAE encoder gives the grounder for a batch of images (see PngGrounder.encodeImages). Caller owns. */
export type EncodedImages = {
  /** [B, H/f, W/f, C]: VAE mean × scaling_factor, as `backbone.encodeImages`. */
  readonly latents: tf.Tensor4D;
  /** The VAE encoder maps of the skip levels (mask_stride finer than the UNet's), coarsest first; [] by default. */
  readonly skips: FeatureMap[];
};

export type PngGrounderOutput = {
  /** Mask logits after the initial queries and after every decoder layer; the last is final. [B, H/s, W/s, P], s = `maskStride`. */
  readonly predictions: tf.Tensor4D[];
  /** With decoder.box_head, each prediction's boxes [B, P, 4] (normalised cx, cy, w, h of the mask frame). */
  readonly boxes?: tf.Tensor3D[];
  /** [B, P], 1 = real phrase. */
  readonly phraseMask: tf.Tensor2D;
  /** Per adapted block, EIPA's inject attention [B, HW, P] (with `recordAttention`). */
  readonly attention: Record<string, tf.Tensor3D>;
  /** The frozen UNet's up-path levels as read (through EIPA), coarsest first. */
  readonly features: FeatureMap[];
};

/**
 * Per sample i, a binary mask (row-major, at the original image's size) for each of its first
 * `counts[i]` phrases, from mask logits [B, h, w, P] on letterboxed canvases (the grounder's last
 * prediction): the letterbox of `transforms[i]` is removed (`unletterbox`: crop, bilinear resize
 * to the original size, logit > 0). The one logits → masks route of `predict`, `groundNarrative`
 * and the benchmark evaluation. Does not dispose `logits`.
 */
export async function masksFromLogits(logits: tf.Tensor4D, transforms: readonly LetterboxTransform[], counts: readonly number[]): Promise<Uint8Array[][]> {
  const masks: Uint8Array[][] = [];
  for (const [i, transform] of transforms.entries()) {
    const maps = tf.slice(logits, [i, 0, 0, 0], [1, -1, -1, counts[i]]) as tf.Tensor4D; // [1, h, w, counts[i]]
    try {
      masks.push(await unletterbox(maps, transform));
    } finally {
      maps.dispose();
    }
  }
  return masks;
}

/**
 * The PNG model: a frozen DiffusionBackbone read through EIPA, then MLMA and the phrase-query mask
 * decoder. Built from one config; the trainable parts are the adapter, MLMA and the decoder.
 */
export class PngGrounder {
  private readonly eipa: EipaAttachment;
  private readonly taps: FeatureTaps;
  /** The VAE encoder blocks of the skip levels (mask_stride finer than the UNet's finest level). */
  private readonly encoderTaps?: EncoderFeatureTaps;
  /** The backbone's noise schedule, for `noise_seed`. */
  private readonly scheduler: DDPMScheduler;
  private disableCheckpointing?: () => void;

  private constructor(
    readonly config: PngGrounderConfig,
    readonly backbone: DiffusionBackbone,
    readonly adapter: PhraseAdapter,
    readonly mlma: MultiLevelMutualAggregation,
    readonly decoder: PngDecoder,
    /** The trainable text side (config `text`), if it has anything to train. */
    readonly text: TextSide | undefined,
    options: { recordAttention?: boolean },
  ) {
    const skips = skipLevels(backbone, config.mask_stride);
    const [channels, strides] = [mlma.config.skip_channels, skipStrides(mlma.config)];
    if (JSON.stringify([channels, strides]) !== JSON.stringify([skips.map((l) => l.channels), skips.map((l) => l.stride)])) {
      throw new Error(
        `PngGrounder: MLMA has skip levels of channels [${channels}] at strides [${strides}], but mask_stride ${config.mask_stride} on this backbone reads VAE encoder blocks of channels [${skips.map((l) => l.channels)}] at strides [${skips.map((l) => l.stride)}]; load the grounder with the config.json it was saved with, onto the backbone it was trained on`,
      );
    }
    if (skips.length) this.encoderTaps = new EncoderFeatureTaps(backbone.vae, { levels: skips.map((l) => l.name) });
    this.taps = new FeatureTaps(backbone.unet, { imageStride: backbone.vae.downsampleFactor });
    this.eipa = attachEipa(backbone.unet, adapter, { levels: this.taps.levels, recordAttention: options.recordAttention });
    this.scheduler = new DDPMScheduler(backbone.schedulerConfig);
  }

  /** Fresh trainable parts for `backbone`. */
  static create(backbone: DiffusionBackbone, config: Partial<PngGrounderConfig> = {}, options: { seed?: number; recordAttention?: boolean } = {}): PngGrounder {
    const c = resolvePngGrounderConfig(config);
    const seed = options.seed ?? 0;
    const levels = Object.values(backbone.unet.upBlockShapes());
    const skips = skipLevels(backbone, c.mask_stride);
    return PngGrounder.assemble(c, backbone, options, {
      adapter: () => PhraseAdapter.create(backbone.unet, c.eipa, { seed }),
      text: () =>
        TextSide.isEnabled(c.text) ? TextSide.create({ ...c.text, text_dim: backbone.unet.config.cross_attention_dim }, { seed: seed + 3 }) : undefined,
      mlma: () =>
        MultiLevelMutualAggregation.create(
          {
            ...c.mlma,
            image_channels: levels.map((l) => l.channels),
            image_strides: levels.map((l) => l.stride * backbone.vae.downsampleFactor),
            phrase_dim: backbone.unet.config.cross_attention_dim,
            ...(skips.length ? { skip_channels: skips.map((l) => l.channels), skip_strides: skips.map((l) => l.stride) } : {}),
          },
          { seed: seed + 1 },
        ),
      decoder: (mlma) =>
        PngDecoder.create(
          {
            num_feature_levels: Math.min(3, levels.length), // Mask2Former's 3, or every level a shallower UNet has
            ...c.decoder,
            hidden_dim: mlma.config.hidden_dim,
            in_channels: mlma.config.hidden_dim,
            mask_dim: mlma.config.mask_dim,
            max_phrases: c.max_phrases,
          },
          { seed: seed + 2 },
        ),
    });
  }

  /** Loads a grounder saved with `save(dir)` onto `backbone` (strict: another config is an error naming the tensor). */
  static async fromPretrained(dir: string, backbone: DiffusionBackbone, options: { recordAttention?: boolean } = {}): Promise<PngGrounder> {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const read = async (file: string, what: string): Promise<Buffer> => {
      const at = path.join(dir, file);
      if (!fs.existsSync(at))
        throw new Error(`${at}: missing; not a PngGrounder folder (expected config.json, eipa/, mlma/, decoder/, and text/ when its config has a text side)`);
      return readInputFile(at, what);
    };
    const module = async (part: string): Promise<ModuleFiles> => ({
      config: (await read(path.join(part, CONFIG_FILE), `the ${part} config (JSON)`)).toString('utf8'),
      weights: new Uint8Array(await read(path.join(part, WEIGHTS_FILE), `the ${part} weights (safetensors)`)),
    });
    const config = (await read('config.json', 'the grounder config (JSON)')).toString('utf8');
    const text = TextSide.isEnabled(resolvePngGrounderConfig(parseJsonObject(config, path.join(dir, 'config.json'))).text) ? await module('text') : undefined;
    return PngGrounder.fromFiles({ config, eipa: await module('eipa'), mlma: await module('mlma'), decoder: await module('decoder'), text }, backbone, {
      recordAttention: options.recordAttention,
      name: dir,
    });
  }

  /**
   * As fromPretrained, from the contents of the folder's files (browsers, uploads). `name` (where
   * the files came from) prefixes the files in errors.
   */
  static fromFiles(files: PngGrounderFiles, backbone: DiffusionBackbone, options: { recordAttention?: boolean; name?: string } = {}): PngGrounder {
    const at = (file: string) => (options.name ? joinUrl(options.name, file) : file);
    const c = resolvePngGrounderConfig(parseJsonObject(files.config, at('config.json')));
    return PngGrounder.assemble(c, backbone, options, {
      adapter: () => PhraseAdapter.fromFiles(files.eipa, backbone.unet, at('eipa')),
      mlma: () => MultiLevelMutualAggregation.fromFiles(files.mlma, at('mlma')),
      decoder: () => PngDecoder.fromFiles(files.decoder, at('decoder')),
      text: () => {
        if (!TextSide.isEnabled(c.text)) return undefined;
        if (!files.text)
          throw new Error(
            `${at('config.json')}: the config has a text side (text: ${JSON.stringify(c.text)}) but no text/ files were given; pass text/config.json and text/model.safetensors`,
          );
        return TextSide.fromFiles(files.text, at('text'));
      },
    });
  }

  /** Builds the three trainable parts in order; if one fails, frees those already built. */
  private static assemble(
    config: PngGrounderConfig,
    backbone: DiffusionBackbone,
    options: { recordAttention?: boolean },
    make: {
      adapter: () => PhraseAdapter;
      mlma: () => MultiLevelMutualAggregation;
      decoder: (mlma: MultiLevelMutualAggregation) => PngDecoder;
      text: () => TextSide | undefined;
    },
  ): PngGrounder {
    const windowTokens = backbone.tokenizer.modelMaxLength - 2;
    check(
      config.window_overlap < windowTokens,
      'PngGrounderConfig',
      'window_overlap',
      `an integer below the ${windowTokens} tokens of an encoder window`,
      config.window_overlap,
    );
    const made: Array<{ dispose(): void }> = [];
    try {
      const adapter = make.adapter();
      made.push(adapter);
      check(
        !(config.context === 'caption' && adapter.config.dynamic_prompt),
        'PngGrounderConfig',
        'context',
        "'phrases' or 'both' with EIPA's dynamic_prompt ('caption' gives the prompt no phrase slots; set eipa.dynamic_prompt to false for it)",
        config.context,
      );
      const mlma = make.mlma();
      made.push(mlma);
      const decoder = make.decoder(mlma);
      made.push(decoder);
      const text = make.text();
      if (text) made.push(text);
      const width = backbone.unet.config.cross_attention_dim;
      if (text && text.config.text_dim !== width)
        throw new Error(
          `PngGrounder: the text side has text_dim ${text.config.text_dim}, the UNet's cross_attention_dim is ${width}; load the grounder onto the backbone it was trained on`,
        );
      return new PngGrounder(config, backbone, adapter, mlma, decoder, text, options);
    } catch (e) {
      for (const m of made) m.dispose();
      throw e;
    }
  }

  /** Fetches the folder a grounder was saved to (config.json, eipa/, mlma/, decoder/, text/ with a text side) at `url` and loads it onto `backbone`, as fromFiles. */
  static async fromUrl(url: string, backbone: DiffusionBackbone, options: { recordAttention?: boolean; fetch?: FetchFunction } = {}): Promise<PngGrounder> {
    const get = { fetch: options.fetch };
    const config = new TextDecoder().decode(await fetchFile(joinUrl(url, 'config.json'), get));
    const hasText = TextSide.isEnabled(resolvePngGrounderConfig(parseJsonObject(config, joinUrl(url, 'config.json'))).text);
    const [eipa, mlma, decoder, text] = await Promise.all([
      fetchModuleFiles(joinUrl(url, 'eipa'), get),
      fetchModuleFiles(joinUrl(url, 'mlma'), get),
      fetchModuleFiles(joinUrl(url, 'decoder'), get),
      hasText ? fetchModuleFiles(joinUrl(url, 'text'), get) : undefined,
    ]);
    return PngGrounder.fromFiles({ config, eipa, mlma, decoder, text }, backbone, { recordAttention: options.recordAttention, name: url });
  }

  /** Every trainable variable, keyed `eipa.<key>`, `mlma.<key>`, `decoder.<key>` and `text.<key>` (checkpoint names). */
  namedVariables(): Record<string, tf.Variable> {
    const named: Record<string, tf.Variable> = {};
    for (const [prefix, params] of [
      ['eipa', this.adapter.parameters],
      ['mlma', this.mlma.parameters],
      ['decoder', this.decoder.parameters],
      ...(this.text ? [['text', this.text.parameters] as const] : []),
    ] as const) {
      for (const key of params.keys()) named[`${prefix}.${key}`] = params.get(key) as tf.Variable;
    }
    return named;
  }

  /** Phrase features of narratives (frozen CLIP, mean-pooled over each phrase's tokens; with the caption tokens when the grounder reads them, see `phraseEncoding`). Caller owns. */
  encodePhrases(narratives: readonly Narrative[]): PhraseFeatures {
    return encodePhrases(this.backbone.tokenizer, this.backbone.textEncoder, narratives, phraseEncoding(this.config));
  }

  /**
   * images NHWC [B, H, W, 3] in [-1, 1] (H, W multiples of `backbone.imageMultiple`) and one
   * narrative per image → mask logits per decoder layer. Caller owns the outputs.
   */
  forward(images: tf.Tensor4D, narratives: readonly Narrative[]): PngGrounderOutput {
    const phrases = this.encodePhrases(narratives);
    try {
      return this.forwardFeatures(images, phrases);
    } finally {
      tf.dispose(phrases);
    }
  }

  /** As forward, from phrase features computed beforehand (they are frozen, so a trainer can cache them). */
  forwardFeatures(images: tf.Tensor4D, phrases: PhraseFeatures): PngGrounderOutput {
    this.checkImages(images, phrases.tensor.shape[0]);
    return tf.tidy(() => {
      const { latents, skips } = this.encodeImages(images);
      return this.forwardLatents(latents, phrases, skips);
    });
  }

  /** Input pixels per pixel of the predicted masks (config mask_stride, or the finest UNet level's). */
  get maskStride(): number {
    return this.mlma.maskFeaturesShape().stride;
  }

  /**
   * The frozen VAE encoder's part of the forward (a trainer computes it once per image): the
   * latents and, with a mask_stride finer than the UNet's, the encoder maps of the skip levels,
   * tapped from the same encoder run. images NHWC [B, H, W, 3] in [-1, 1]. Caller owns.
   */
  encodeImages(images: tf.Tensor4D): EncodedImages {
    const taps = this.encoderTaps;
    if (!taps) return { latents: this.backbone.encodeImages(images), skips: [] };
    return tf.tidy(() => {
      const { mean, outputs } = this.backbone.vae.encode(images);
      return { latents: tf.mul(mean, this.backbone.vae.config.scaling_factor) as tf.Tensor4D, skips: [...taps.pyramid(outputs)] };
    });
  }

  /**
   * As forward, from VAE latents [B, H/f, W/f, C] and the skip levels' maps (`encodeImages(images)`;
   * frozen, so a trainer computes them once per image) and phrase features; `probe` checks EIPA at
   * test time.
   */
  forwardLatents(latents: tf.Tensor4D, phrases: PhraseFeatures, skips: readonly FeatureMap[] = [], probe?: EipaProbe): PngGrounderOutput {
    const c = this.config;
    if (latents.shape[0] !== phrases.tensor.shape[0])
      throw new Error(`PngGrounder: ${latents.shape[0]} latents but ${phrases.tensor.shape[0]} narratives; pass one narrative per image`);
    if (probe?.kind === 'swap_phrases' && probe.donors.shape.join() !== latents.shape.join())
      throw new Error(`PngGrounder: swap_phrases donors are [${probe.donors.shape}], the latents [${latents.shape}]; pass one donor image's latents per image`);
    const expected = this.mlma.config.skip_channels.length;
    if (skips.length !== expected) {
      throw new Error(
        `PngGrounder: mask_stride ${c.mask_stride} reads ${expected} VAE encoder maps (skip levels), got ${skips.length}; pass the skips of grounder.encodeImages(images) with its latents`,
      );
    }
    return tf.tidy('PngGrounder.forward', () => {
      const text = this.readText(phrases);
      const probes = { caption: text.caption, latentSize: [latents.shape[1], latents.shape[2]] as const };
      let context = this.eipa.context(text.phrases, { ...probes, zeroGates: probe?.kind === 'zero_gates' });
      if (probe?.kind === 'swap_phrases') {
        const donor = this.unetOutputs(probe.donors, text.prompt, this.eipa.context(text.phrases, { ...probes, recordStates: true })); // the same phrases over the donor images
        context = this.eipa.context(text.phrases, { ...probes, replayStates: this.eipa.blockStates(donor) });
      }
      const outputs = this.unetOutputs(latents, text.prompt, context);
      const images = this.taps.pyramid(outputs); // coarsest first
      const fused = this.mlma.forward({ images, phrases: this.eipa.phraseStates(outputs, text.phrases), skips }); // the phrase state at each level of `images`
      const { predictions, boxes } = this.decoder.forward({
        pixels: fused.pixels,
        maskFeatures: fused.maskFeatures,
        phrases: fused.phrases,
        phraseMask: phrases.mask,
      });
      return { predictions, ...(boxes ? { boxes } : {}), phraseMask: tf.clone(phrases.mask), attention: this.eipa.attention(outputs), features: [...images] };
    });
  }

  /** The adapted UNet's outputs for latents read at `timestep` (clean, or noised to it on the backbone's schedule) with `prompt` [B, M, D] (mask [B, M]) as its cross-attention context. */
  private unetOutputs(latents: tf.Tensor4D, prompt: { tensor: tf.Tensor3D; mask: tf.Tensor2D }, context: ForwardContext): Record<string, tf.Tensor> {
    const c = this.config;
    const z =
      c.noise_seed === null
        ? latents
        : this.scheduler.addNoise(latents, seededNormal(latents.shape, c.noise_seed) as tf.Tensor4D, new Array<number>(latents.shape[0]).fill(c.timestep));
    return this.backbone.unet.forward(z, c.timestep, prompt.tensor, { encoderAttentionMask: prompt.mask, context }).outputs;
  }

  /**
   * What the model reads of the text: the phrases (through the text side, if any), the UNet's
   * prompt (config `context`) and, with 'both', the caption tokens the prompt holds before the
   * phrase slots. Without a text side and with context 'phrases' this is `phrases` as given.
   */
  private readText(phrases: PhraseFeatures): { phrases: PhraseFeatures; prompt: { tensor: tf.Tensor3D; mask: tf.Tensor2D }; caption?: CaptionTokens } {
    const c = this.config;
    const text = this.text;
    if (!text && c.context === 'phrases') return { phrases, prompt: phrases };
    const source = phrases.caption;
    if (readsCaption(c) && !source) {
      throw new Error(
        `PngGrounder: context '${c.context}'${c.text.caption_attention ? ' with text.caption_attention' : ''} reads the caption's token states, and these phrase features have none; encode them with grounder.encodePhrases (or encodePhrases(…, phraseEncoding(config)))`,
      );
    }
    let tensor = text ? text.readCaption(text.readSentence(phrases.tensor, phrases.mask, phrases.sentence), phrases.mask, source) : phrases.tensor; // [B, P, D]
    if (text && c.context !== 'caption') tensor = text.adaptPrompt(tensor); // the phrase slots are prompt tokens
    const read = { tensor, mask: phrases.mask };
    if (c.context === 'phrases') return { phrases: read, prompt: read };
    if (!source)
      throw new Error(
        `PngGrounder: context '${c.context}' reads the caption's token states, and these phrase features have none; encode them with grounder.encodePhrases`,
      );
    const caption = { ...source, tensor: text ? text.adaptPrompt(source.tensor) : source.tensor }; // [B, T, D], mask [B, T]
    if (c.context === 'caption') return { phrases: read, prompt: caption };
    const prompt = { tensor: tf.concat([caption.tensor, tensor], 1) as tf.Tensor3D, mask: tf.concat([caption.mask, read.mask], 1) as tf.Tensor2D }; // [B, T + P, D], [B, T + P]
    return { phrases: read, prompt, caption };
  }

  /**
   * The training loss from latents and skips (see forwardLatents): sigmoid BCE + Dice per real
   * phrase against `targets` [B, H, W, P] (binary, at image or mask resolution), with
   * decoder.box_head also DETR's box loss against each target's box, summed over decoder layers
   * with deep supervision. With config.point_loss the mask terms are taken at points `random`
   * draws (Mask2Former's point loss).
   */
  loss(latents: tf.Tensor4D, phrases: PhraseFeatures, targets: tf.Tensor4D, skips: readonly FeatureMap[] = [], random?: () => number): tf.Scalar {
    const c = this.config;
    if (c.point_loss && !random)
      throw new Error('PngGrounder.loss: config.point_loss samples points at random; pass `random` (uniform in [0, 1), e.g. new Prng(seed).next)');
    return tf.tidy(() => {
      const { predictions, boxes, phraseMask } = this.forwardLatents(latents, phrases, skips);
      const used = <T>(perLayer: T[]) => (c.deep_supervision ? perLayer : perLayer.slice(-1));
      const weights = { bce_weight: c.bce_weight, dice_weight: c.dice_weight, box_l1_weight: c.box_l1_weight, box_giou_weight: c.box_giou_weight };
      const points = c.point_loss && random ? { ...c.point_loss, random } : undefined;
      return deepSupervisionLoss(used(predictions), targets, phraseMask, weights, boxes && used(boxes), points);
    });
  }

  /**
   * Binary masks, one Uint8Array (row-major, at the original image's size) per real phrase of each
   * narrative. `images` [B, S, S, 3] are letterboxed canvases (`letterbox(image, S)` of
   * @png/png-data) and `transforms` their letterbox transforms, removed as `groundNarrative` and
   * the benchmark evaluation remove them; without `transforms` each (square) image is its own
   * canvas and the masks are S×S.
   */
  async predict(images: tf.Tensor4D, narratives: readonly Narrative[], transforms?: readonly LetterboxTransform[]): Promise<Uint8Array[][]> {
    const [b, h, w] = images.shape;
    if (transforms && transforms.length !== b)
      throw new Error(`PngGrounder.predict: ${b} images but ${transforms.length} letterbox transforms; pass one per image`);
    if (!transforms && h !== w)
      throw new Error(
        `PngGrounder.predict: images are ${h}×${w} (H×W) and no letterbox transforms were given; letterbox them to a square canvas (letterbox(image, S) of @png/png-data) and pass the transforms`,
      );
    const { predictions, boxes, phraseMask, attention, features } = this.forward(images, narratives);
    const last = predictions[predictions.length - 1]; // [B, h/f, w/f, P]
    tf.dispose([...predictions.slice(0, -1), boxes ?? [], phraseMask, attention, features]);
    const canvas: LetterboxTransform = { target: h, scale: 1, contentHeight: h, contentWidth: w, padTop: 0, padLeft: 0, height: h, width: w };
    try {
      return await masksFromLogits(
        last,
        transforms ?? narratives.map(() => canvas),
        narratives.map((n) => n.phrases.length),
      );
    } finally {
      last.dispose();
    }
  }

  /**
   * Gradient checkpointing of the frozen UNet for training (see
   * `UNet2DConditionModel.enableGradientCheckpointing`): its blocks keep only their inputs for the
   * gradient and run again in the backward, differentiated for EIPA's variables (the trainable
   * ones read inside the UNet). Same losses and gradients, one more UNet forward per step. With
   * `backbone.unet.enableSequentialOffload()` as well, the blocks' frozen weights leave the wasm
   * heap between uses (at 256×256, 70 % of SD v1.5's width then trains within wasm32's 4 GiB; see
   * scripts/bench_train_step.mjs). Returns the function that turns it off; `dispose()` does too.
   */
  enableGradientCheckpointing(): () => void {
    const disable = this.backbone.unet.enableGradientCheckpointing({ variables: this.adapter.trainableVariables() });
    const off = () => {
      disable();
      if (this.disableCheckpointing === off) this.disableCheckpointing = undefined;
    };
    this.disableCheckpointing = off;
    return off;
  }

  numTrainableParameters(): number {
    return this.adapter.numParameters() + this.mlma.numParameters() + this.decoder.numParameters() + (this.text?.numParameters() ?? 0);
  }

  /** Saves the trainable parts (eipa/, mlma/, decoder/, text/ with a text side) and the grounder's config.json. */
  async save(dir: string): Promise<void> {
    const path = await import('node:path');
    await this.adapter.save(path.join(dir, 'eipa'));
    await this.mlma.save(path.join(dir, 'mlma'));
    await this.decoder.save(path.join(dir, 'decoder'));
    if (this.text) await this.text.save(path.join(dir, 'text'));
    writeFileAtomic(path.join(dir, 'config.json'), `${JSON.stringify(this.config, null, 2)}\n`);
  }

  /** Detaches the adapter, turns gradient checkpointing off and frees the trainable parts (not the backbone, which the caller owns). */
  dispose(): void {
    this.disableCheckpointing?.();
    this.eipa.detach();
    this.taps.remove();
    this.encoderTaps?.remove();
    this.adapter.dispose();
    this.mlma.dispose();
    this.decoder.dispose();
    this.text?.dispose();
  }

  private checkImages(images: tf.Tensor4D, count: number): void {
    const m = this.backbone.imageMultiple;
    if (images.rank !== 4 || images.shape[3] !== 3) throw new Error(`PngGrounder: images must be NHWC [B, H, W, 3] in [-1, 1], got [${images.shape}]`);
    if (images.shape[0] !== count) throw new Error(`PngGrounder: ${images.shape[0]} images but ${count} narratives; pass one narrative per image`);
    if (images.shape[1] % m !== 0 || images.shape[2] % m !== 0) {
      throw new Error(
        `PngGrounder: image size ${images.shape[1]}×${images.shape[2]} is not a multiple of ${m} (the VAE's and UNet's downsampling); resize or pad the images`,
      );
    }
  }
}
