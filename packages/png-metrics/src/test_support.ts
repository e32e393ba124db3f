/** Test helpers (used only by the *.test.ts files): a seeded PRNG and a tiny PNG dataset on disk. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pngjs from 'pngjs';

/** The tests' seeded PRNG (floats in [0, 1)). */
export { mulberry32 as seededRandom } from '@png/node-utils';

/** A panoptic PNG (8-bit RGB) of a row-major id map, id = R + 256·G + 65536·B. */
export function panopticPng(ids: readonly number[], width: number, height: number): Buffer {
  const png = new pngjs.PNG({ width, height });
  ids.forEach((id, k) => {
    png.data[4 * k] = id & 0xff;
    png.data[4 * k + 1] = (id >> 8) & 0xff;
    png.data[4 * k + 2] = (id >> 16) & 0xff;
    png.data[4 * k + 3] = 255;
  });
  return pngjs.PNG.sync.write(png, { colorType: 2 });
}

const IMAGE_1 = {
  width: 6,
  height: 4,
  // 1001, 1002: person (thing, 1002 is crowd); 1003: grass (stuff); 1004: tree-merged (stuff); 0: void
  ids: [
    [1001, 1001, 0, 1002, 1002, 1003],
    [1001, 1001, 0, 1002, 1003, 1003],
    [1004, 1004, 1003, 1003, 1003, 1003],
    [1004, 1004, 1003, 1003, 0, 0],
  ].flat(),
};
const IMAGE_2 = {
  width: 3,
  height: 5,
  // 70000 = 0x011170 uses all three channels (person, thing); 2: grass (stuff)
  ids: [
    [70000, 70000, 2],
    [70000, 70000, 2],
    [2, 2, 2],
    [2, 0, 0],
    [0, 0, 0],
  ].flat(),
};

const chunk = (utterance: string, segment_ids: string[], noun: boolean, plural = false) => ({ utterance, segment_ids, noun, plural });

/** The png_coco records of the tiny dataset (see {@link writeTinyDataset}). */
export const TINY_RECORDS = [
  {
    image_id: '1',
    annotator_id: 7,
    caption: 'In this image I can see two people on the grass, trees and sky with someone.',
    segments: [
      chunk('In this image I can see', [], false),
      chunk('two people', ['1001', '1002'], true, true), // plural thing (1002 is iscrowd)
      chunk('on', [], false),
      chunk('the grass', ['1003'], true), // singular stuff
      chunk(',', [], false),
      chunk('trees', ['1004'], true, true), // flagged plural, 1 segment: singular stuff
      chunk('and', [], false),
      chunk('sky', [], true), // ungrounded noun: not evaluated
      chunk('with someone', ['1001'], false), // non-noun chunk with ids: not evaluated
      chunk('.', [], false),
    ],
  },
  {
    image_id: '1', // a second narrative of the same image
    annotator_id: 8,
    caption: 'A person, grass and person, person and grass.',
    segments: [
      chunk('A person', ['1001'], true), // singular thing
      chunk(',', [], false),
      chunk('grass and person', ['1003', '1001'], true), // plural, last segment a person: thing
      chunk(',', [], false),
      chunk('person and grass', ['1001', '1003'], true), // plural, last segment grass: stuff
      chunk('.', [], false),
    ],
  },
  {
    image_id: '2',
    annotator_id: 7,
    caption: 'An object on the ground.',
    segments: [chunk('An object', ['70000'], true), chunk('on', [], false), chunk('the ground', ['2'], true), chunk('.', [], false)],
  },
  {
    image_id: '2', // no grounded noun phrase: nothing to evaluate
    annotator_id: 9,
    caption: 'Nothing here.',
    segments: [chunk('Nothing here', [], true), chunk('.', [], false)],
  },
];

/** The panoptic JSON of the tiny dataset. */
export const TINY_PANOPTIC = {
  images: [
    { id: 1, width: IMAGE_1.width, height: IMAGE_1.height, file_name: '000000000001.jpg' },
    { id: 2, width: IMAGE_2.width, height: IMAGE_2.height, file_name: '000000000002.jpg' },
  ],
  annotations: [
    {
      image_id: 1,
      file_name: '000000000001.png',
      segments_info: [
        { id: 1001, category_id: 1, bbox: [0, 0, 2, 2], area: 4, iscrowd: 0 },
        { id: 1002, category_id: 1, bbox: [3, 0, 2, 2], area: 3, iscrowd: 1 },
        { id: 1003, category_id: 2, bbox: [2, 0, 4, 4], area: 10, iscrowd: 0 },
        { id: 1004, category_id: 3, bbox: [0, 2, 2, 2], area: 4, iscrowd: 0 },
      ],
    },
    {
      image_id: 2,
      file_name: '000000000002.png',
      segments_info: [
        { id: 70000, category_id: 1, bbox: [0, 0, 2, 2], area: 4, iscrowd: 0 },
        { id: 2, category_id: 2, bbox: [0, 0, 3, 4], area: 6, iscrowd: 0 },
      ],
    },
  ],
  categories: [
    { id: 1, name: 'person', supercategory: 'person', isthing: 1, color: [220, 20, 60] },
    { id: 2, name: 'grass-merged', supercategory: 'plant', isthing: 0, color: [152, 251, 152] },
    { id: 3, name: 'tree-merged', supercategory: 'plant', isthing: 0, color: [107, 142, 35] },
  ],
};

/** Row-major id maps of the tiny dataset's images, by image id. */
export const TINY_ID_MAPS = new Map([
  [1, IMAGE_1],
  [2, IMAGE_2],
]);

/**
 * Writes the tiny dataset (split `val2017`) into a new temporary folder and returns its path:
 * `png_coco_val2017.json`, `panoptic_val2017.json`, `panoptic_segmentation/val2017/*.png`.
 * `records` replaces the png_coco records (e.g. with a malformed one).
 */
export function writeTinyDataset(records: unknown = TINY_RECORDS): string {
  const dir = mkdtempSync(join(tmpdir(), 'png-metrics-'));
  writeFileSync(join(dir, 'png_coco_val2017.json'), JSON.stringify(records));
  writeFileSync(join(dir, 'panoptic_val2017.json'), JSON.stringify(TINY_PANOPTIC));
  const pngDir = join(dir, 'panoptic_segmentation', 'val2017');
  mkdirSync(pngDir, { recursive: true });
  for (const [id, image] of TINY_ID_MAPS) {
    writeFileSync(join(pngDir, `${String(id).padStart(12, '0')}.png`), panopticPng(image.ids, image.width, image.height));
  }
  return dir;
}
