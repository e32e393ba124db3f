// Where do a model's masks go on phrases whose object has look-alikes? For every thing phrase of a
// synthetic grounding benchmark's val split (`png synth --kind grounding`) and a `png evaluate`
// predictions.json, it measures the IoU of the predicted mask with its target, and, where the image
// holds look-alikes of the target (other instances of the same shape whose mean colour is within 40
// RGB of the target's: the twins, plural subsets' other members, occluders' twins), the IoU with
// target ∪ look-alikes and the share of look-alike pixels the mask covers. A model that reads the
// phrase's colour and shape words but not its relation, size or order words marks the look-alikes too.
//
//   node examples/lookalike_confusion.mjs --data DIR --predictions FILE [--json OUT]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { decodeImage } from '@png/png-data';
import { decodePanopticPng, decodeRle, maskIoU } from '@png/png-metrics';
import { writeFileAtomic } from '@png/node-utils';

const COLOUR_DISTANCE = 40;
const { values: args } = parseArgs({
  options: { data: { type: 'string' }, predictions: { type: 'string' }, json: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
if (args.help || !args.data || !args.predictions) {
  console.log('Usage: node examples/lookalike_confusion.mjs --data BENCHMARK_DIR --predictions PREDICTIONS_JSON [--json OUT]');
  process.exit(args.help ? 0 : 2);
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    console.error(`lookalike_confusion: cannot read ${file}: ${e.message}`);
    process.exit(1);
  }
}
const annotations = path.join(args.data, 'annotations');
const panoptic = readJson(path.join(annotations, 'panoptic_val2017.json'));
const records = readJson(path.join(annotations, 'png_coco_val2017.json'));
const predictions = readJson(args.predictions);
const annotationOf = new Map(panoptic.annotations.map((a) => [a.image_id, a]));
const imageOf = new Map(panoptic.images.map((i) => [i.id, i]));
const isThing = new Map(panoptic.categories.map((c) => [c.id, c.isthing === 1]));

/** Mean RGB of every segment of an image: Map id → [r, g, b]. */
function meanColours(ids, rgb) {
  const sums = new Map();
  for (let p = 0; p < ids.length; p++) {
    const s = sums.get(ids[p]) ?? [0, 0, 0, 0];
    for (let c = 0; c < 3; c++) s[c] += rgb.data[p * 3 + c];
    s[3]++;
    sums.set(ids[p], s);
  }
  return new Map([...sums].map(([id, s]) => [id, s.slice(0, 3).map((v) => v / s[3])]));
}

const byType = {};
for (const prediction of predictions) {
  const record = records[prediction.record_index];
  const annotation = annotationOf.get(Number(prediction.image_id));
  const image = imageOf.get(Number(prediction.image_id));
  if (!record || !annotation || !image)
    throw new Error(
      `${args.predictions}: record ${prediction.record_index} (image ${prediction.image_id}) is not in ${args.data}'s val split; pass the benchmark the predictions were made on`,
    );
  const { ids } = decodePanopticPng(fs.readFileSync(path.join(annotations, 'panoptic_segmentation', 'val2017', annotation.file_name)));
  const colours = meanColours(ids, await decodeImage(fs.readFileSync(path.join(args.data, 'images', 'val2017', image.file_name))));
  for (const phrase of prediction.phrases) {
    const targetIds = phrase.segment_ids.map(Number);
    const chunk = record.segments.find((c) => (c.segment_ids ?? []).map(Number).join() === targetIds.join());
    const target = annotation.segments_info.find((s) => s.id === targetIds[0]);
    if (!target || !isThing.get(target.category_id)) continue;
    const colour = colours.get(target.id);
    const lookalikes = annotation.segments_info
      .filter((s) => !targetIds.includes(s.id) && s.category_id === target.category_id && colours.has(s.id))
      .filter((s) => Math.hypot(...colours.get(s.id).map((v, c) => v - colour[c])) < COLOUR_DISTANCE)
      .map((s) => s.id);
    const mask = decodeRle(phrase.rle);
    const targetMask = new Uint8Array(ids.length);
    const unionMask = new Uint8Array(ids.length);
    let lookalikePixels = 0;
    let covered = 0;
    for (let p = 0; p < ids.length; p++) {
      if (targetIds.includes(ids[p])) targetMask[p] = unionMask[p] = 1;
      else if (lookalikes.includes(ids[p])) {
        unionMask[p] = 1;
        lookalikePixels++;
        if (mask[p]) covered++;
      }
    }
    const type = chunk?.phrase_type ?? 'untyped';
    byType[type] ??= { phrases: 0, iouTarget: 0, withLookalikes: 0, iouTargetThere: 0, iouUnion: 0, covered: 0 };
    const g = byType[type];
    const iou = maskIoU(mask, targetMask);
    g.phrases++;
    g.iouTarget += iou;
    if (lookalikes.length === 0) continue;
    g.withLookalikes++;
    g.iouTargetThere += iou;
    g.iouUnion += maskIoU(mask, unionMask);
    g.covered += covered / lookalikePixels;
  }
}

const rows = Object.entries(byType)
  .sort(([a], [b]) => a.localeCompare(b))
  .map(([type, g]) => ({
    type,
    thing_phrases: g.phrases,
    mean_iou_target: g.iouTarget / g.phrases,
    with_lookalikes: g.withLookalikes,
    mean_iou_target_with_lookalikes: g.withLookalikes ? g.iouTargetThere / g.withLookalikes : null,
    mean_iou_target_and_lookalikes: g.withLookalikes ? g.iouUnion / g.withLookalikes : null,
    lookalike_pixels_covered: g.withLookalikes ? g.covered / g.withLookalikes : null,
  }));
const f = (v) => (v === null ? '' : v.toFixed(2));
console.log(
  '| phrase type | thing phrases | IoU with target | with look-alikes | IoU with target (there) | IoU with target ∪ look-alikes | look-alike pixels covered |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows)
  console.log(
    `| ${r.type} | ${r.thing_phrases} | ${f(r.mean_iou_target)} | ${r.with_lookalikes} | ${f(r.mean_iou_target_with_lookalikes)} | ${f(r.mean_iou_target_and_lookalikes)} | ${f(r.lookalike_pixels_covered)} |`,
  );
if (args.json) writeFileAtomic(args.json, `${JSON.stringify(rows, null, 2)}\n`);
