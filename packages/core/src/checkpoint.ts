import { writeFileAtomic } from './atomic_write';
import { SafetensorsFile, writeSafetensorsFile } from './safetensors';
import type { Parameters } from './weights';

/** File names of a module checkpoint folder (the diffusers/transformers layout). */
export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

/**
 * Saves a module as `<dir>/config.json` + `<dir>/model.safetensors` (torch layout, F32), streamed
 * one tensor at a time. Each file is written atomically (temporary file, then rename), so an interrupted save never leaves a
 * half-written checkpoint under the final names.
 */
export async function saveModule(dir: string, config: object, params: Parameters, metadata: Record<string, string> = {}): Promise<void> {
  const { join } = await import('node:path');
  await writeSafetensorsFile(join(dir, WEIGHTS_FILE), params.torchShapes(), params.torchData(), metadata);
  await writeFileAtomic(join(dir, CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
}

/** Opens a folder written by saveModule: its parsed config and its weights. Close the source after building. */
export async function openModule(dir: string): Promise<{ config: Record<string, unknown>; source: SafetensorsFile }> {
  const fs = await import('node:fs');
  const { join } = await import('node:path');
  const configFile = join(dir, CONFIG_FILE);
  if (!fs.existsSync(configFile)) throw new Error(`${configFile}: missing; not a module checkpoint folder`);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  } catch (e) {
    throw new Error(`${configFile}: not valid JSON (${(e as Error).message})`);
  }
  return { config, source: await SafetensorsFile.open(join(dir, WEIGHTS_FILE)) };
}
