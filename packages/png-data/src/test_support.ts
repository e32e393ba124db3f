/** Hand-made benchmark folders for the loader tests (not part of the package API). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import jpeg from 'jpeg-js';
import { splitPaths } from './layout';
import { encodePng, panopticRgb, SYNTHETIC_CATEGORIES } from './synthetic';

/** A segment drawn as the rectangle rows [y0, y1) × columns [x0, x1) (later segments win). */
export interface RectSegment {
  id: number;
  categoryId: number;
  rect: [number, number, number, number];
  iscrowd?: 0 | 1;
}

/** An image of a hand-made benchmark. */
export interface HandImage {
  id: number;
  height: number;
  width: number;
  segments: RectSegment[];
  /** File format of the image (default png). */
  format?: 'png' | 'jpg';
}

/** The id map of an image: its rectangles painted in order. */
export function idMap(image: HandImage): Uint32Array {
  const ids = new Uint32Array(image.height * image.width);
  for (const { id, rect } of image.segments) {
    const [y0, x0, y1, x1] = rect;
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) ids[y * image.width + x] = id;
  }
  return ids;
}

/** The RGB pixels of an image: a colour derived from each pixel's segment id. */
export function pixels(image: HandImage): Uint8Array {
  const ids = idMap(image);
  const rgb = new Uint8Array(ids.length * 3);
  ids.forEach((id, k) => {
    rgb[3 * k] = (id * 37) % 256;
    rgb[3 * k + 1] = (id * 91) % 256;
    rgb[3 * k + 2] = (id * 151) % 256;
  });
  return rgb;
}

/** Binary mask of the union of `ids` in an image. */
export function unionMask(image: HandImage, ids: readonly number[]): Uint8Array {
  return Uint8Array.from(idMap(image), (id) => (ids.includes(id) ? 1 : 0));
}

/** Writes `split` of a benchmark under `root`: images, panoptic PNGs and JSON, and the given records (array or raw text). */
export function writeHandBenchmark(root: string, split: string, images: readonly HandImage[], records: unknown[] | string): void {
  const paths = splitPaths(root, split);
  for (const image of images) {
    const rgb = pixels(image);
    const file = paths.image(image.id, image.format ?? 'png');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    if (image.format === 'jpg') {
      const rgba = new Uint8Array(image.height * image.width * 4);
      for (let k = 0; k < image.height * image.width; k++) rgba.set([rgb[3 * k], rgb[3 * k + 1], rgb[3 * k + 2], 255], 4 * k);
      fs.writeFileSync(file, jpeg.encode({ data: rgba, width: image.width, height: image.height }, 95).data);
    } else {
      fs.writeFileSync(file, encodePng(image.width, image.height, rgb));
    }
    fs.mkdirSync(path.dirname(paths.panopticPng(image.id)), { recursive: true });
    fs.writeFileSync(paths.panopticPng(image.id), encodePng(image.width, image.height, panopticRgb(idMap(image))));
  }
  const panoptic = {
    images: images.map((i) => ({ id: i.id, width: i.width, height: i.height, file_name: `${i.id}.jpg` })),
    annotations: images.map((i) => ({
      image_id: i.id,
      file_name: `${i.id}.png`,
      segments_info: i.segments.map((s) => ({
        id: s.id,
        category_id: s.categoryId,
        bbox: [s.rect[1], s.rect[0], s.rect[3] - s.rect[1], s.rect[2] - s.rect[0]],
        area: 1,
        iscrowd: s.iscrowd ?? 0,
      })),
    })),
    categories: SYNTHETIC_CATEGORIES,
  };
  fs.writeFileSync(paths.panoptic, JSON.stringify(panoptic));
  fs.writeFileSync(paths.records, typeof records === 'string' ? records : JSON.stringify(records, null, 1));
}

/** A png_coco chunk. */
export function chunk(utterance: string, ids: number[] = [], noun = ids.length > 0, plural = ids.length > 1): Record<string, unknown> {
  return { utterance, segment_ids: ids.map(String), noun, plural };
}
