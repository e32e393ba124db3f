export {
  PngGrounder,
  DEFAULT_PNG_GROUNDER_CONFIG,
  phraseEncoding,
  resolvePngGrounderConfig,
  type EipaProbe,
  type EncodedImages,
  type PngGrounderConfig,
  type PngGrounderFiles,
  type PngGrounderOutput,
  type PointLossConfig,
  type UNetContext,
} from './png_grounder';
export { DEFAULT_TEXT_SIDE_CONFIG, type TextSideConfig } from './text_side';
export { groundNarrative, type GroundedPhrase } from './ground_narrative';
export { encodeSamples, gatherBatch, readGroundedSamples, type EncodedSamples } from './benchmark_samples';
export {
  trainOnBenchmark,
  resolveTrainingSettings,
  DEFAULT_TRAINING_SETTINGS,
  type TrainingSettings,
  type TrainingProgress,
  type BenchmarkTrainingOptions,
  type BenchmarkTrainingResult,
} from './benchmark_training';
export {
  evaluateOnBenchmark,
  mergeEvaluationShards,
  type BenchmarkEvaluationOptions,
  type BenchmarkEvaluationResult,
  type EvaluationShard,
  type MergedEvaluation,
} from './benchmark_evaluation';
export { BASELINE_RULES, evaluateBaselines, type BaselineOptions, type BaselineResult, type BaselineRule, type BaselineScore } from './baselines';
export { findNounPhrases } from './noun_phrases';
export { PHRASE_COLORS, enlargeImage, phraseColor, renderAttentionMap, renderOverlay, tileImages } from './visualize';
export type { AttentionMapOptions, OverlayMask, OverlayOptions, Rgb, Tile, TileOptions } from './visualize';
export {
  crossAttentionIoU,
  phraseAttentionMaps,
  phraseMapIoUs,
  recordCrossAttention,
  type CrossAttentionIoUOptions,
  type CrossAttentionIoUResult,
  type CrossAttentionRecording,
  type PhraseAttentionMapOptions,
  type PhraseAttentionMaps,
  type ThingStuffValues,
} from './cross_attention_maps';
