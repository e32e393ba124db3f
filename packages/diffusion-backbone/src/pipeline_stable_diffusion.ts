import * as tf from '@tensorflow/tfjs-core';
import { fetchFile, fetchModuleFiles, joinUrl, type FetchFunction, type ModuleFiles, type TextEncoding } from '@png/core';
import { CLIPTextModel } from './clip/modeling_clip';
import { CLIPTokenizer, type CLIPTokenizerFiles } from './clip/tokenization_clip';
import { componentWeightsFile, type ComponentOptions } from './component_files';
import { AutoencoderKL, type AutoencoderKLParts } from './models/autoencoder_kl';
import { UNet2DConditionModel } from './models/unet_2d_condition';

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
  ) {
    const width = textEncoder.config.hidden_size;
    if (unet.config.cross_attention_dim !== width) {
      throw new Error(`DiffusionBackbone: the UNet's cross_attention_dim (${unet.config.cross_attention_dim}) differs from the text encoder's hidden_size (${width}); unet/ and text_encoder/ come from different models`);
    }
    if (unet.config.in_channels !== vae.config.latent_channels) {
      throw new Error(`DiffusionBackbone: the UNet reads ${unet.config.in_channels} channels but the VAE makes ${vae.config.latent_channels}; unet/ and vae/ come from different models`);
    }
  }

  /** A backbone from components built or loaded separately (checked for consistency). It owns them from now on. */
  static fromComponents(components: { unet: UNet2DConditionModel; vae: AutoencoderKL; textEncoder: CLIPTextModel; tokenizer: CLIPTokenizer }): DiffusionBackbone {
    return new DiffusionBackbone(components.unet, components.vae, components.textEncoder, components.tokenizer);
  }

  /** Loads `<dir>/{unet,vae,text_encoder,tokenizer}`. Everything is frozen. */
  static async fromPretrained(dir: string, options: DiffusionBackboneOptions = {}): Promise<DiffusionBackbone> {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const missing = ['unet', 'vae', 'text_encoder', 'tokenizer'].filter((c) => !fs.existsSync(path.join(dir, c)));
    if (missing.length) {
      throw new Error(`${dir}: not a diffusers pipeline folder; missing ${missing.map((m) => `${m}/`).join(', ')} (expected unet/, vae/, text_encoder/, tokenizer/)`);
    }
    const loaded: Array<{ dispose(): void }> = [];
    const keep = <T extends { dispose(): void }>(m: T): T => (loaded.push(m), m);
    try {
      const unet = keep(await UNet2DConditionModel.fromPretrained(path.join(dir, 'unet'), options));
      const vae = keep(await AutoencoderKL.fromPretrained(path.join(dir, 'vae'), { variant: options.variant, parts: options.vaeParts ?? 'encoder' }));
      const textEncoder = keep(await CLIPTextModel.fromPretrained(path.join(dir, 'text_encoder'), options));
      const tokenizer = await CLIPTokenizer.fromPretrained(path.join(dir, 'tokenizer'));
      return new DiffusionBackbone(unet, vae, textEncoder, tokenizer);
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
    const keep = <T extends { dispose(): void }>(m: T): T => (loaded.push(m), m);
    try {
      const unet = keep(UNet2DConditionModel.fromFiles(files.unet, { variant: options.variant, name: at('unet') }));
      const vae = keep(AutoencoderKL.fromFiles(files.vae, { variant: options.variant, name: at('vae'), parts: options.vaeParts ?? 'encoder' }));
      const textEncoder = keep(CLIPTextModel.fromFiles(files.textEncoder, { variant: options.variant, name: at('text_encoder') }));
      const tokenizer = CLIPTokenizer.fromFiles(files.tokenizer, at('tokenizer'));
      return new DiffusionBackbone(unet, vae, textEncoder, tokenizer);
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
    const tokenizer = async (file: string, optional = false): Promise<string | undefined> => {
      const bytes = await fetchFile(joinUrl(url, 'tokenizer', file), { ...get, optional });
      return bytes && new TextDecoder().decode(bytes);
    };
    const [unet, vae, textEncoder, vocab, merges, tokenizerConfig, specialTokensMap] = await Promise.all([
      fetchModuleFiles(joinUrl(url, 'unet'), { ...get, weightsFile: componentWeightsFile('diffusion_pytorch_model', options) }),
      fetchModuleFiles(joinUrl(url, 'vae'), { ...get, weightsFile: componentWeightsFile('diffusion_pytorch_model', options) }),
      fetchModuleFiles(joinUrl(url, 'text_encoder'), { ...get, weightsFile: componentWeightsFile('model', options) }),
      tokenizer('vocab.json'),
      tokenizer('merges.txt'),
      tokenizer('tokenizer_config.json', true),
      tokenizer('special_tokens_map.json', true),
    ]);
    return DiffusionBackbone.fromFiles({ unet, vae, textEncoder, tokenizer: { vocab: vocab!, merges: merges!, tokenizerConfig, specialTokensMap } }, { ...options, name: url });
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

  /** Frees every weight of every component. */
  dispose(): void {
    this.unet.dispose();
    this.vae.dispose();
    this.textEncoder.dispose();
  }
}
