// Node only (its own entry, `@png/diffusion-backbone/png-tiny-sd`): the folder is found on disk
// beside this file. In a browser, serve models/png-tiny-sd and load it with DiffusionBackbone.fromUrl.
import { fileURLToPath } from 'node:url';
import { DiffusionBackbone, type DiffusionBackboneOptions } from '@png/diffusion-backbone';

/**
 * The folder of the embedded tiny backbone shipped in this package (`models/png-tiny-sd`, 9.4 MB):
 * a diffusers-layout SD-architecture pipeline pretrained by the project (UNet 1.49 M parameters,
 * VAE downsampling 4, a 2-layer CLIP text encoder of width 64, an 802-token CLIP BPE vocabulary).
 */
export const PNG_TINY_SD_DIR: string = fileURLToPath(new URL('../models/png-tiny-sd', import.meta.url));

/** Loads the embedded tiny backbone: `DiffusionBackbone.fromPretrained(PNG_TINY_SD_DIR, options)`. */
export function loadPngTinySd(options: DiffusionBackboneOptions = {}): Promise<DiffusionBackbone> {
  return DiffusionBackbone.fromPretrained(PNG_TINY_SD_DIR, options);
}
