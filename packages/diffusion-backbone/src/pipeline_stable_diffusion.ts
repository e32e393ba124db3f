import * as tf from '@tensorflow/tfjs-core';
import {
  fetchFile,
  fetchModuleFiles,
  joinUrl,
  nodeOnly,
  parseJsonObject,
  readInputFile,
  seededNormal,
  type FetchFunction,
  type ModuleFiles,
  type TextEncoding,
} from '@png/core';
import { CLIPTextModel } from './clip/modeling_clip';
import { CLIPTokenizer, type CLIPTokenizerFiles } from './clip/tokenization_clip';
import { componentWeightsFile, type ComponentOptions } from './component_files';
import { AutoencoderKL, type AutoencoderKLParts } from './models/autoencoder_kl';
import { UNet2DConditionModel } from './models/unet_2d_condition';
import { DDIMScheduler } from './schedulers/scheduling_ddim';
import { resolveSchedulerConfig, type SchedulerConfig } from './schedulers/scheduling_ddpm';

export interface DiffusionBackboneOptions extends ComponentOptions {
  /** VAE parts to load: grounding only encodes ('encoder', the default); sampling needs 'all'. */
  readonly vaeParts?: AutoencoderKLParts;
}

/** The contents of a diffusers pipeline folder's files, per component (see DiffusionBackbone.fromFiles). */
export interface DiffusionBackboneFiles {
  /** unet/config.json and unet/diffusion_pytorch_model[.variant].safetensors */
  readonly unet: ModuleFiles;
  /** vae/config.json and vae/diffusion_pytorch_model[.variant].safetensors */
  readonly vae: ModuleFiles;
  /** text_encoder/config.json and text_encoder/model[.variant].safetensors */
  readonly textEncoder: ModuleFiles;
  /** tokenizer/vocab.json, merges.txt and, if present, tokenizer_config.json and special_tokens_map.json */
  readonly tokenizer: CLIPTokenizerFiles;
  /** scheduler/scheduler_config.json, if the folder has one (default: SD's noise schedule). */
  readonly schedulerConfig?: string;
}

/** Options of {@link DiffusionBackbone.generate}. */
export interface GenerateOptions {
  /** DDIM steps (default 50). */
  readonly numInferenceSteps?: number;
  /** Classifier-free guidance scale; ≤ 1 turns guidance off (default 7.5). */
  readonly guidanceScale?: number;
  /** What to steer away from: one string, or one per prompt (default ''). */
  readonly negativePrompt?: string | readonly string[];
  /** Image size in pixels, multiples of imageMultiple (default: the UNet's sample_size × the VAE's factor). */
  readonly height?: number;
  readonly width?: number;
  /** Seed of the initial noise (and of DDIM's noise when eta > 0). Default 0. */
  readonly seed?: number;
  /** DDIM's η: 0 is deterministic DDIM (default), 1 is DDPM-like. */
  readonly eta?: number;
}

/**
 * The frozen Stable Diffusion components a grounding model reads images and captions with: the
 * UNet, the VAE, the CLIP text encoder and its tokenizer, loaded from one diffusers pipeline
 * folder (`unet/`, `vae/`, `text_encoder/`, `tokenizer/`).
 */
export class DiffusionBackbone {
  private constructor(
    readonly unet: UNet2DConditionModel,
    readonly vae: AutoencoderKL,
    readonly textEncoder: CLIPTextModel,
    readonly tokenizer: CLIPTokenizer,
    /** The noise schedule of scheduler/scheduler_config.json (SD's when the folder has none). */
    readonly schedulerConfig: SchedulerConfig,
  ) {
    const width = textEncoder.config.hidden_size;
    if (unet.config.cross_attention_dim !== width) {
      throw new Error(
        `DiffusionBackbone: the UNet's cross_attention_dim (${unet.config.cross_attention_dim}) differs from the text encoder's hidden_size (${width}); unet/ and text_encoder/ come from different models`,
      );
    }
    if (unet.config.in_channels !== vae.config.latent_channels) {
      throw new Error(
        `DiffusionBackbone: the UNet reads ${unet.config.in_channels} channels but the VAE makes ${vae.config.latent_channels}; unet/ and vae/ come from different models`,
      );
    }
  }

  /** A backbone from components built or loaded separately (checked for consistency). It owns them from now on. */
  static fromComponents(components: {
    unet: UNet2DConditionModel;
    vae: AutoencoderKL;
    textEncoder: CLIPTextModel;
    tokenizer: CLIPTokenizer;
    schedulerConfig?: Partial<SchedulerConfig>;
  }): DiffusionBackbone {
    return new DiffusionBackbone(
      components.unet,
      components.vae,
      components.textEncoder,
      components.tokenizer,
      resolveSchedulerConfig(components.schedulerConfig),
    );
  }

  /** Loads `<dir>/{unet,vae,text_encoder,tokenizer}`. Everything is frozen. */
  static async fromPretrained(dir: string, options: DiffusionBackboneOptions = {}): Promise<DiffusionBackbone> {
    const { fs, path } = await nodeOnly('DiffusionBackbone.fromPretrained');
    const missing = ['unet', 'vae', 'text_encoder', 'tokenizer'].filter((c) => !fs.existsSync(path.join(dir, c)));
    if (missing.length) {
      throw new Error(
        `${dir}: not a diffusers pipeline folder; missing ${missing.map((m) => `${m}/`).join(', ')} (expected unet/, vae/, text_encoder/, tokenizer/)`,
      );
    }
    const loaded: Array<{ dispose(): void }> = [];
    const keep = <T extends { dispose(): void }>(m: T): T => {
      loaded.push(m);
      return m;
    };
    try {
      const unet = keep(await UNet2DConditionModel.fromPretrained(path.join(dir, 'unet'), options));
      const vae = keep(await AutoencoderKL.fromPretrained(path.join(dir, 'vae'), { ...options, parts: options.vaeParts ?? 'encoder' }));
      const textEncoder = keep(await CLIPTextModel.fromPretrained(path.join(dir, 'text_encoder'), options));
      const tokenizer = await CLIPTokenizer.fromPretrained(path.join(dir, 'tokenizer'));
      const schedulerFile = path.join(dir, 'scheduler', 'scheduler_config.json');
      const scheduler = fs.existsSync(schedulerFile)
        ? readSchedulerConfig((await readInputFile(schedulerFile, 'a scheduler config (JSON)')).toString('utf8'), schedulerFile)
        : resolveSchedulerConfig();
      return new DiffusionBackbone(unet, vae, textEncoder, tokenizer, scheduler);
    } catch (e) {
      for (const m of loaded) m.dispose();
      throw e;
    }
  }

  /**
   * As fromPretrained, from the contents of the folder's files (browsers, uploads). `name` (where
   * the files came from) prefixes the component folders in errors.
   */
  static fromFiles(files: DiffusionBackboneFiles, options: DiffusionBackboneOptions & { name?: string } = {}): DiffusionBackbone {
    const at = (component: string) => (options.name ? joinUrl(options.name, component) : component);
    const loaded: Array<{ dispose(): void }> = [];
    const keep = <T extends { dispose(): void }>(m: T): T => {
      loaded.push(m);
      return m;
    };
    try {
      const unet = keep(UNet2DConditionModel.fromFiles(files.unet, { variant: options.variant, name: at('unet') }));
      const vae = keep(AutoencoderKL.fromFiles(files.vae, { variant: options.variant, name: at('vae'), parts: options.vaeParts ?? 'encoder' }));
      const textEncoder = keep(CLIPTextModel.fromFiles(files.textEncoder, { variant: options.variant, name: at('text_encoder') }));
      const tokenizer = CLIPTokenizer.fromFiles(files.tokenizer, at('tokenizer'));
      const scheduler =
        files.schedulerConfig === undefined
          ? resolveSchedulerConfig()
          : readSchedulerConfig(files.schedulerConfig, joinUrl(at('scheduler'), 'scheduler_config.json'));
      return new DiffusionBackbone(unet, vae, textEncoder, tokenizer, scheduler);
    } catch (e) {
      for (const m of loaded) m.dispose();
      throw e;
    }
  }

  /**
   * Fetches the diffusers pipeline folder at `url` (its unet/, vae/, text_encoder/ and tokenizer/
   * files; single-file checkpoints) and loads it as fromFiles does: the way to load a backbone in
   * a browser. Errors name the URL that failed.
   */
  static async fromUrl(url: string, options: DiffusionBackboneOptions & { fetch?: FetchFunction } = {}): Promise<DiffusionBackbone> {
    const get = { fetch: options.fetch };
    const tokenizer = async (file: string): Promise<string> => new TextDecoder().decode(await fetchFile(joinUrl(url, 'tokenizer', file), get));
    const optionalTokenizer = async (file: string): Promise<string | undefined> => {
      const bytes = await fetchFile(joinUrl(url, 'tokenizer', file), { ...get, optional: true });
      return bytes && new TextDecoder().decode(bytes);
    };
    const [unet, vae, textEncoder, vocab, merges, tokenizerConfig, specialTokensMap, schedulerConfig] = await Promise.all([
      fetchModuleFiles(joinUrl(url, 'unet'), { ...get, weightsFile: componentWeightsFile('diffusion_pytorch_model', options) }),
      fetchModuleFiles(joinUrl(url, 'vae'), { ...get, weightsFile: componentWeightsFile('diffusion_pytorch_model', options) }),
      fetchModuleFiles(joinUrl(url, 'text_encoder'), { ...get, weightsFile: componentWeightsFile('model', options) }),
      tokenizer('vocab.json'),
      tokenizer('merges.txt'),
      optionalTokenizer('tokenizer_config.json'),
      optionalTokenizer('special_tokens_map.json'),
      fetchFile(joinUrl(url, 'scheduler', 'scheduler_config.json'), { ...get, optional: true }).then((b) => b && new TextDecoder().decode(b)),
    ]);
    return DiffusionBackbone.fromFiles(
      { unet, vae, textEncoder, tokenizer: { vocab, merges, tokenizerConfig, specialTokensMap }, schedulerConfig },
      { ...options, name: url },
    );
  }

  /** Image sides must be multiples of this: the VAE's and the UNet's downsampling together. */
  get imageMultiple(): number {
    return this.vae.downsampleFactor * this.unet.downsampleFactor;
  }

  /**
   * CLIP hidden states of captions, each padded/truncated to the tokenizer's length (77).
   * Caller owns the returned tensors.
   */
  encodeText(captions: readonly string[]): TextEncoding & { inputIds: tf.Tensor2D } {
    const { inputIds, attentionMask } = this.tokenizer.call(captions, { padding: 'max_length', truncation: true });
    return tf.tidy(() => {
      const ids = tf.tensor2d(inputIds, undefined, 'int32');
      const { lastHiddenState } = this.textEncoder.forward(ids);
      return { hiddenStates: lastHiddenState, attentionMask: tf.tensor2d(attentionMask, undefined, 'float32'), inputIds: ids };
    });
  }

  /** Images NHWC [B, H, W, 3] in [-1, 1] → latents (the VAE mean × scaling_factor). Caller owns the result. */
  encodeImages(images: tf.Tensor4D): tf.Tensor4D {
    return this.vae.latents(images);
  }

  /**
   * Text-to-image sampling, as diffusers' StableDiffusionPipeline.__call__ with a DDIMScheduler:
   * seeded Gaussian latents, `numInferenceSteps` DDIM steps of the UNet with classifier-free
   * guidance (ε = ε_uncond + scale·(ε_text − ε_uncond)), then the VAE decoder. Needs the VAE
   * loaded with vaeParts: 'all'. Returns images [B, H, W, 3] in [0, 1]; the caller owns them.
   */
  generate(prompt: string | readonly string[], options: GenerateOptions = {}): tf.Tensor4D {
    const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
    if (prompts.length === 0) throw new Error('DiffusionBackbone.generate: no prompt; pass a string or a non-empty array of strings');
    if (!this.vae.decoder)
      throw new Error("DiffusionBackbone.generate: the VAE was loaded without its decoder; load the backbone with vaeParts: 'all' to generate images");
    const negative = options.negativePrompt ?? '';
    const negatives = typeof negative === 'string' ? prompts.map(() => negative) : [...negative];
    if (negatives.length !== prompts.length)
      throw new Error(`DiffusionBackbone.generate: ${negatives.length} negative prompts for ${prompts.length} prompts; pass one string or one per prompt`);
    const f = this.vae.downsampleFactor;
    const size = this.unet.config.sample_size; // latent side(s) the UNet was trained at
    const [sampleH, sampleW] = typeof size === 'number' ? [size, size] : Array.isArray(size) ? size : [undefined, undefined];
    const height = options.height ?? (sampleH === undefined ? undefined : sampleH * f);
    const width = options.width ?? (sampleW === undefined ? undefined : sampleW * f);
    if (height === undefined || width === undefined) throw new Error('DiffusionBackbone.generate: the UNet config has no sample_size; pass height and width');
    const m = this.imageMultiple;
    for (const [name, v] of [
      ['height', height],
      ['width', width],
    ] as const) {
      if (!(Number.isInteger(v) && v > 0 && v % m === 0))
        throw new Error(`DiffusionBackbone.generate: ${name} ${v} is not a positive multiple of ${m} (the VAE's and the UNet's downsampling together)`);
    }
    const guidanceScale = options.guidanceScale ?? 7.5;
    if (!Number.isFinite(guidanceScale)) throw new Error(`DiffusionBackbone.generate: guidanceScale must be a finite number, got ${guidanceScale}`);
    const guided = guidanceScale > 1;
    const eta = options.eta ?? 0;
    if (!(Number.isFinite(eta) && eta >= 0)) throw new Error(`DiffusionBackbone.generate: eta must be a number ≥ 0, got ${eta}`);
    const seed = options.seed ?? 0;
    const scheduler = new DDIMScheduler(this.schedulerConfig);
    scheduler.setTimesteps(options.numInferenceSteps ?? 50);

    const b = prompts.length;
    const shape: [number, number, number, number] = [b, height / f, width / f, this.unet.config.in_channels];
    const text = this.encodeText(guided ? [...negatives, ...prompts] : prompts); // [(2)B, 77, D]: unconditional first
    let latents = tf.tidy(() => tf.mul(seededNormal(shape, seed), scheduler.initNoiseSigma) as tf.Tensor4D);
    try {
      scheduler.timesteps.forEach((t, i) => {
        const next = tf.tidy(() => {
          const input = guided ? (tf.concat([latents, latents]) as tf.Tensor4D) : latents; // [(2)B, h, w, C]
          let eps = this.unet.forward(input, t, text.hiddenStates).sample;
          if (guided) {
            const [uncond, cond] = tf.split(eps, 2); // each [B, h, w, C]
            eps = tf.add(uncond, tf.mul(guidanceScale, tf.sub(cond, uncond))) as tf.Tensor4D;
          }
          const noise = eta > 0 ? (seededNormal(shape, seed + 1 + i) as tf.Tensor4D) : undefined;
          return scheduler.step(eps, t, latents, { eta, noise });
        });
        latents.dispose();
        latents = next;
      });
      return tf.tidy(() => {
        const image = this.vae.decode(tf.div(latents, this.vae.config.scaling_factor) as tf.Tensor4D); // [B, H, W, 3] in about [-1, 1]
        return tf.clipByValue(tf.add(tf.mul(image, 0.5), 0.5), 0, 1) as tf.Tensor4D;
      });
    } finally {
      latents.dispose();
      tf.dispose([text.hiddenStates, text.attentionMask, text.inputIds]);
    }
  }

  /** Frees every weight of every component. */
  dispose(): void {
    this.unet.dispose();
    this.vae.dispose();
    this.textEncoder.dispose();
  }
}

/** A scheduler_config.json's contents, validated; errors name the file. */
function readSchedulerConfig(text: string, where: string): SchedulerConfig {
  const json = parseJsonObject(text, where);
  try {
    return resolveSchedulerConfig(json);
  } catch (e) {
    (e as Error).message = `${where}: ${(e as Error).message}`;
    throw e;
  }
}
