export { RECALL_GRID_SIZE, averageRecall, averageRecallReference, recallThreshold, summarizeRecall } from './average_recall';
export type { RecallSummary } from './average_recall';
export { maskIoU } from './iou';
export type { Mask } from './iou';
export { decodeRle, encodeRle } from './rle';
export type { CocoRle, EncodeRleOptions } from './rle';
export { PHRASE_GROUPS, PngEvaluator } from './evaluator';
export type { PhraseGroup, PngEvaluatorState, PngMetrics, PngPhrase, PngSample, PredictedMask } from './evaluator';
export {
  PngGroundTruth,
  decodePanopticPng,
  extractPhrases,
  parseNarrativeRecords,
  parsePanopticJson,
} from './gt';
export type { GtPhrase, NarrativeChunk, NarrativeRecord, PanopticIdMap, PanopticIndex, PanopticSegment } from './gt';
export { evaluatePredictions, parsePredictions, writePredictionsFile } from './predictions';
export type { EvaluatePredictionsOptions, PngPhrasePrediction, PngPredictionRecord } from './predictions';
export { parseMaskPhrases } from './mask_phrases';
export type { MaskPhrase } from './mask_phrases';
export { buildReport, formatMetricsTable, formatPercent, summarizeMetrics } from './report';
export type { GroupValues, PngReport, PngSummary } from './report';
export { renderRecallCurvesSvg } from './svg_plot';
