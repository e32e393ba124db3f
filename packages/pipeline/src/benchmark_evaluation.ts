/**
 * Evaluates a PngGrounder on a PNG benchmark split with the PNG Average Recall, and draws what it
 * predicts. Everything is written to one folder:
 *
 *   report.json          AR / counts / acc@0.5 per group (the five groups, size buckets, phrase types) with
 *                        bootstrap intervals over images, and the recall curves (+ the trivial baseline's AR,
 *                        the narratives dropped by the official pre-processing, per reason)
 *   ar_curves.svg        the recall curves (the paper's Figure 4 layout)
 *   predictions.json     every predicted mask as COCO RLE (`png-metrics evaluate` reads it)
 *   overlays/<n>.png     ground truth beside prediction, phrase legend, for the first samples
 *   attention/<n>.png    per adapted block, each pixel in the colour of its most-attended phrase (Figure 5)
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { writeFileAtomic } from '@png/node-utils';
import { encodePng, letterbox, type DroppedRecord, type PngSample, type SkippedRecord } from '@png/png-data';
import {
  PngEvaluator,
  buildReport,
  countDrops,
  encodeRle,
  renderRecallCurvesSvg,
  summarizeMetrics,
  type PngEvaluateOptions,
  type PngMetrics,
  type PngPredictionRecord,
  type PngSample as EvaluatedSample,
  type PngSummary,
} from '@png/png-metrics';
import { encodeSamples, readGroundedSamples } from './benchmark_samples';
import { masksFromLogits, type EipaProbe, type PngGrounder } from './png_grounder';
import { renderAttentionMap, renderOverlay, tileImages } from './visualize';

export interface BenchmarkEvaluationOptions {
  readonly data: string;
  /** Default 'val2017'. */
  readonly split?: string;
  readonly grounder: PngGrounder;
  /** Canvas side the images are letterboxed to (as in training). */
  readonly imageSize: number;
  /** Output folder; nothing is written without it. */
  readonly out?: string;
  /** Samples drawn as overlays (default 8). */
  readonly overlays?: number;
  /** Samples whose EIPA attention is drawn (default 4; needs a grounder made with `recordAttention`). */
  readonly attentionMaps?: number;
  /** Evaluate only the first `limit` grounded records. */
  readonly limit?: number;
  /** Samples per forward (default 8). */
  readonly batchSize?: number;
  /**
   * Groups and intervals of the metrics (png-metrics' `evaluate` options); default: tag groups by
   * `phrase_type`, COCO's size thresholds, 1000 bootstrap resamples of the images (seed 0, 95 %).
   */
  readonly metrics?: PngEvaluateOptions;
  /**
   * A test-time check of EIPA (see EipaProbe). For `swap_phrases` the donor of each sample is the
   * image of the next grounded record of the split (the last's is the first's), so the split needs
   * two records or more.
   */
  readonly probe?: EipaProbe['kind'];
  readonly onProgress?: (done: number, total: number) => void;
}

export interface BenchmarkEvaluationResult {
  readonly metrics: PngMetrics;
  /** Every phrase's IoU, groups and tags (`phraseScores()`), e.g. for `PngEvaluator.pairedBootstrap` against another run. */
  readonly evaluator: PngEvaluator;
  readonly summary: PngSummary;
  /** A trivial baseline on the same phrases: every phrase predicted as the whole image. */
  readonly baseline: PngSummary;
  readonly samples: number;
  readonly phrases: number;
  /** Bad records of the split, left out of the evaluation (each with its index and the field at fault). */
  readonly skipped: readonly SkippedRecord[];
  /** Records the official pre-processing drops (not evaluated, as in the official code). */
  readonly dropped: readonly DroppedRecord[];
  readonly seconds: number;
}

/** One forward's worth of a sample: up to max_phrases of its phrases. */
interface View {
  readonly sample: number;
  readonly first: number;
  readonly count: number;
}

export async function evaluateOnBenchmark(options: BenchmarkEvaluationOptions): Promise<BenchmarkEvaluationResult> {
  const began = performance.now();
  const { grounder, imageSize, out } = options;
  const split = options.split ?? 'val2017';
  const batchSize = options.batchSize ?? 8;
  const overlays = options.overlays ?? 8;
  const attentionMaps = options.attentionMaps ?? 4;
  const maxPhrases = grounder.config.max_phrases;
  const { samples, skipped, dropped } = await readGroundedSamples(options.data, split, { limit: options.limit });
  if (options.probe === 'swap_phrases' && samples.length < 2)
    throw new Error(
      `${options.data}: split ${split} has ${samples.length} grounded record; swap_phrases needs two or more (each image's phrase states come from another image)`,
    );

  // A sample with more phrases than the model takes is grounded in several forwards.
  const views: View[] = samples.flatMap((s, i) =>
    Array.from({ length: Math.ceil(s.phrases.length / maxPhrases) }, (_, k) => ({
      sample: i,
      first: k * maxPhrases,
      count: Math.min(maxPhrases, s.phrases.length - k * maxPhrases),
    })),
  );
  const predicted: Uint8Array[][] = samples.map(() => []);
  const attention: Array<Record<string, Float32Array> | undefined> = samples.map(() => undefined);
  for (let start = 0; start < views.length; start += batchSize) {
    const batch = views.slice(start, start + batchSize);
    const inputs = batch.map((v) => viewSample(samples[v.sample], v));
    const encoded = encodeSamples(grounder, inputs, { size: imageSize, maxPhrases });
    const donors =
      options.probe === 'swap_phrases'
        ? encodeDonors(
            grounder,
            batch.map((v) => samples[(v.sample + 1) % samples.length]),
            imageSize,
          )
        : undefined;
    const out = grounder.forwardLatents(
      encoded.latents,
      encoded.phrases,
      encoded.skips,
      donors ? { kind: 'swap_phrases', donors } : options.probe === 'zero_gates' ? { kind: 'zero_gates' } : undefined,
    );
    const last = out.predictions[out.predictions.length - 1]; // [B, h, w, maxPhrases]
    const masks = await masksFromLogits(
      last,
      encoded.transforms,
      batch.map((v) => v.count),
    );
    for (const [b, view] of batch.entries()) {
      predicted[view.sample].push(...masks[b]);
      if (view.sample < attentionMaps && view.first === 0 && Object.keys(out.attention).length > 0) {
        const maps: Record<string, Float32Array> = {};
        for (const [block, a] of Object.entries(out.attention)) {
          const one = tf.slice(a, [b, 0, 0], [1, -1, view.count]); // [1, HW, count]
          maps[block] = (await one.data()) as Float32Array;
          one.dispose();
        }
        attention[view.sample] = maps;
      }
    }
    tf.dispose([out, encoded.latents, encoded.skips, encoded.phrases, encoded.targets, donors]);
    options.onProgress?.(Math.min(samples.length, batch[batch.length - 1].sample + 1), samples.length);
  }

  const evaluator = new PngEvaluator();
  const baseline = new PngEvaluator();
  const records: PngPredictionRecord[] = [];
  for (const [i, sample] of samples.entries()) {
    const gt = evaluatedSample(sample, split);
    evaluator.process(gt, predicted[i]);
    baseline.process(
      gt,
      sample.phrases.map(() => new Uint8Array(sample.image.height * sample.image.width).fill(1)),
    );
    records.push({
      record_index: sample.index,
      image_id: String(sample.imageId),
      phrases: sample.phrases.map((p, j) => ({
        segment_ids: p.segmentIds.map(String),
        rle: encodeRle(predicted[i][j], sample.image.height, sample.image.width),
      })),
    });
  }
  const metricsOptions = options.metrics ?? { bootstrap: {} };
  const metrics = evaluator.evaluate(metricsOptions);
  const result: BenchmarkEvaluationResult = {
    metrics,
    evaluator,
    summary: summarizeMetrics(metrics),
    baseline: summarizeMetrics(baseline.evaluate(metricsOptions)),
    samples: samples.length,
    phrases: evaluator.phraseCount,
    skipped,
    dropped,
    seconds: (performance.now() - began) / 1000,
  };
  if (out) {
    const report = buildReport(metrics);
    writeFileAtomic(
      path.join(out, 'report.json'),
      `${JSON.stringify({ ...report, split, samples: result.samples, ...(options.probe ? { probe: options.probe } : {}), dropped_narratives: countDrops(dropped), baseline_full_image: result.baseline }, null, 2)}
`,
    );
    writeFileAtomic(path.join(out, 'ar_curves.svg'), renderRecallCurvesSvg(report));
    writeFileAtomic(path.join(out, 'predictions.json'), JSON.stringify(records));
    for (const [i, sample] of samples.slice(0, overlays).entries()) {
      const labels = sample.phrases.map((p) => p.text);
      const figure = tileImages(
        [
          {
            image: renderOverlay(
              sample.image,
              sample.phrases.map((p, j) => ({ label: labels[j], mask: p.mask })),
            ),
            title: 'ground truth',
          },
          {
            image: renderOverlay(
              sample.image,
              predicted[i].map((mask, j) => ({ label: labels[j], mask })),
            ),
            title: 'predicted',
          },
        ],
        { columns: 2 },
      );
      writeFileAtomic(
        path.join(out, 'overlays', `${String(i).padStart(3, '0')}_image${sample.imageId}.png`),
        encodePng(figure.width, figure.height, figure.data),
      );
    }
    for (const [i, maps] of attention.entries()) {
      if (!maps) continue;
      const sample = samples[i];
      const labels = sample.phrases.slice(0, maxPhrases).map((p) => p.text);
      const image = renderOverlay(sample.image, []);
      const tiles = [{ image, title: 'image' }];
      for (const [block, data] of Object.entries(maps)) {
        const side = Math.round(Math.sqrt(data.length / labels.length)); // the square canvas at this block's resolution
        tiles.push({
          image: renderAttentionMap(data, side, side, labels, { size: Math.max(image.height, image.width), legend: false }),
          title: block.replace(/\.transformer_blocks\.0$/, '').replace('attentions.', 'attn.'),
        });
      }
      const columns = Math.ceil(tiles.length / Math.ceil(tiles.length / 4)); // ≤ 4 per row, rows as full as they can be
      const figure = tileImages(tiles, { columns, legend: labels }); // one legend for every panel
      writeFileAtomic(
        path.join(out, 'attention', `${String(i).padStart(3, '0')}_image${sample.imageId}.png`),
        encodePng(figure.width, figure.height, figure.data),
      );
    }
  }
  return result;
}

/** The VAE latents of `donors`' images, letterboxed to `size` as the samples are: [B, S/f, S/f, C]. */
function encodeDonors(grounder: PngGrounder, donors: readonly PngSample[], size: number): tf.Tensor4D {
  return tf.tidy(() =>
    grounder.backbone.encodeImages(
      tf.concat(
        donors.map((d) => letterbox(d.image, size).tensor),
        0,
      ) as tf.Tensor4D,
    ),
  );
}

/** The sample with only the phrases of `view` (one forward's worth). */
function viewSample(sample: PngSample, view: View): PngSample {
  const end = view.first + view.count;
  return {
    ...sample,
    narrative: { ...sample.narrative, phrases: sample.narrative.phrases.slice(view.first, end) },
    phrases: sample.phrases.slice(view.first, end),
  };
}

/** The ground truth of a sample as the evaluator takes it. */
function evaluatedSample(sample: PngSample, split: string): EvaluatedSample {
  return {
    label: `${split} record ${sample.index} (image ${sample.imageId})`,
    imageId: sample.imageId,
    height: sample.image.height,
    width: sample.image.width,
    phrases: sample.phrases.map((p, j) => ({ label: `phrase ${j} "${p.text}"`, isThing: p.isThing, isPlural: p.isPlural, tags: p.tags, mask: p.mask })),
  };
}
