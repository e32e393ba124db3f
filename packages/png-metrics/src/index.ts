export { RECALL_GRID_SIZE, averageRecall, averageRecallReference, recallThreshold, summarizeRecall } from './average_recall';
export type { RecallSummary } from './average_recall';
export { maskIoU } from './iou';
export type { Mask } from './iou';
export { decodeRle, encodeRle } from './rle';
export type { CocoRle, EncodeRleOptions } from './rle';
export {
  COCO_SIZE_THRESHOLDS,
  DEFAULT_GROUP_BY,
  PHRASE_GROUPS,
  PngEvaluator,
  SIZE_BUCKETS,
  interleaveShards,
  parseSizeThresholds,
  sizeBucket,
} from './evaluator';
export type {
  GroupMetrics,
  GroupedValues,
  PairedDifference,
  PhraseGroup,
  PngEvaluateOptions,
  PngEvaluatorState,
  PngMetrics,
  PngPairedDifferences,
  PngPhrase,
  PngPhraseScore,
  PngSample,
  PredictedMask,
  SizeBucket,
} from './evaluator';
export type { BootstrapOptions, BootstrapSettings, ConfidenceInterval } from './bootstrap';
export {
  PngGroundTruth,
  decodePanopticPng,
  extractPhrases,
  parseNarrativeRecords,
  parsePanopticJson,
} from './gt';
export type { GtPhrase, NarrativeChunk, NarrativeRecord, PanopticIdMap, PanopticIndex, PanopticSegment } from './gt';
export { basicTokenize } from './basic_tokenizer';
export type { BasicToken } from './basic_tokenizer';
export { NARRATIVE_DROP_REASONS, alignUtterances, countDrops, describeDrops } from './pre_process';
export type { NarrativeDrop, NarrativeDropReason, UtteranceAlignment } from './pre_process';
export { evaluatePredictions, parsePredictions, writePredictionsFile } from './predictions';
export type { EvaluatePredictionsOptions, PngPhrasePrediction, PngPredictionRecord } from './predictions';
export { parseMaskPhrases } from './mask_phrases';
export type { MaskPhrase } from './mask_phrases';
export { buildReport, formatMetricsTable, formatPercent, summarizeMetrics } from './report';
export type { GroupSummary, GroupValues, PngReport, PngSummary } from './report';
export { renderRecallCurvePanelsSvg, renderRecallCurvesSvg } from './svg_plot';
export type { RecallCurvePanel, RecallCurveSeries } from './svg_plot';
