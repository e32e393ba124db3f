export { PngGrounder, DEFAULT_PNG_GROUNDER_CONFIG, phraseEncoding, resolvePngGrounderConfig, type PngGrounderConfig, type PngGrounderFiles, type PngGrounderOutput, type UNetContext } from './png_grounder';
export { DEFAULT_TEXT_SIDE_CONFIG, type TextSideConfig } from './text_side';
export * from './training';
export { groundNarrative, type GroundedPhrase } from './ground_narrative';
export { encodeSamples, gatherBatch, readGroundedSamples, type EncodedSamples } from './benchmark_samples';
export {
  trainOnBenchmark,
  resolveTrainingSettings,
  DEFAULT_TRAINING_SETTINGS,
  BatchOrder,
  type TrainingSettings,
  type TrainingProgress,
  type BenchmarkTrainingOptions,
  type BenchmarkTrainingResult,
} from './benchmark_training';
export { evaluateOnBenchmark, type BenchmarkEvaluationOptions, type BenchmarkEvaluationResult } from './benchmark_evaluation';
export { findNounPhrases } from './noun_phrases';
export { PHRASE_COLORS, enlargeImage, phraseColor, renderAttentionMap, renderOverlay, tileImages } from './visualize';
export type { AttentionMapOptions, OverlayMask, OverlayOptions, Rgb, Tile, TileOptions } from './visualize';
export { autoencoderKLLoss, type AutoencoderKLLossOptions } from './train_autoencoder_kl';
export { textToImageLoss, type TextToImageBatch } from './train_text_to_image';
export {
  pretrainBackbone,
  resolvePretrainSettings,
  DEFAULT_PRETRAIN_SETTINGS,
  TINY_SD_ARCHITECTURE,
  type BackboneArchitecture,
  type PretrainSettings,
  type PretrainProgress,
  type PretrainOptions,
  type PretrainResult,
} from './pretrain_backbone';
export { crossAttentionIoU, phraseAttentionMaps, phraseMapIoUs, recordCrossAttention, type CrossAttentionIoUOptions, type CrossAttentionIoUResult, type CrossAttentionRecording, type PhraseAttentionMapOptions, type PhraseAttentionMaps, type ThingStuffValues } from './cross_attention_maps';
