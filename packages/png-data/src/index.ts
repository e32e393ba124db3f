export { PngDataset, decodeImage } from './dataset';
export type { DroppedRecord, PhraseTokenizer, PngDatasetOptions, PngSample, RgbImage, SamplePhrase, SkippedRecord, TokenPosition } from './dataset';
export { streamJsonArray } from './json_stream';
export type { StreamedElement } from './json_stream';
export {
  GROUNDING_DEFAULT_SIZE,
  SYNTHETIC_CATEGORIES,
  SYNTHETIC_PALETTE,
  encodePng,
  generateSyntheticBenchmark,
  synthesizeScene,
} from './synthetic';
export { PHRASE_TYPES } from './scene';
export type { NarrativeChunkJson, PhraseType, SceneKind, SceneOptions, SyntheticNarrative, SyntheticScene, SyntheticSegment } from './scene';
export type { SyntheticBenchmark, SyntheticBenchmarkOptions } from './synthetic';
export { imageTensor, letterbox, letterboxTransform, masksToTarget, unletterbox } from './transforms';
export type { LetterboxTransform } from './transforms';
