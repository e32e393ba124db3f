/** File layout of a PNG benchmark folder (spec §1.1), shared by the generator and the loader. */
import { join } from 'node:path';

/** `000000397133`: the zero-padded file stem of an image id. */
export function imageStem(imageId: number): string {
  return String(imageId).padStart(12, '0');
}

/** The paths of one split under a benchmark folder `root`. */
export function splitPaths(root: string, split: string) {
  return {
    /** `annotations/png_coco_{split}.json` */
    records: join(root, 'annotations', `png_coco_${split}.json`),
    /** `annotations/panoptic_{split}.json` */
    panoptic: join(root, 'annotations', `panoptic_${split}.json`),
    /** `images/{split}/<id:012d>.<extension>` */
    image: (imageId: number, extension: 'jpg' | 'png') => join(root, 'images', split, `${imageStem(imageId)}.${extension}`),
    /** `annotations/panoptic_segmentation/{split}/<id:012d>.png` */
    panopticPng: (imageId: number) => join(root, 'annotations', 'panoptic_segmentation', split, `${imageStem(imageId)}.png`),
  };
}
