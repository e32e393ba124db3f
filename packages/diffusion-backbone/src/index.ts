export {
  UNet2DConditionModel,
  SD15_UNET_CONFIG,
  resolveUNetConfig,
  type UNet2DConditionConfig,
  type UNet2DConditionOutput,
  type UNetForwardOptions,
} from './models/unet_2d_condition';
export { Attention, AttnProcessor, type AttentionProcessor, type AttentionProcessorArgs } from './models/attention_processor';
export { EncoderFeatureTaps, FeatureTaps } from './feature_taps';
export { DiffusionBackbone, type DiffusionBackboneOptions, type DiffusionBackboneFiles } from './pipeline_stable_diffusion';
export {
  AutoencoderKL,
  SD15_VAE_CONFIG,
  DEFAULT_AUTOENCODER_KL_CONFIG,
  resolveAutoencoderKLConfig,
  type AutoencoderKLConfig,
  type AutoencoderKLParts,
  type AutoencoderKLEncodeOutput,
} from './models/autoencoder_kl';
export * from './clip/index';
export {
  encodePhrases,
  phrasePoolingMatrix,
  sentenceSpan,
  tokenizeNarratives,
  validateNarratives,
  type EncodePhrasesOptions,
  type Narrative,
  type NarrativeTokens,
} from './phrase_features';
export { readConfigJson, openWeights, type ComponentOptions, type ComponentFilesOptions } from './component_files';
export { DDPMScheduler, SD_SCHEDULER_CONFIG, resolveSchedulerConfig, noiseSchedule, type SchedulerConfig } from './schedulers/scheduling_ddpm';
export { DDIMScheduler } from './schedulers/scheduling_ddim';
