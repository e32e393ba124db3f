import { parseJsonObject } from './config';
import { readInputFile } from './input_file';
import { nodeOnly } from './node_only';
import { SafetensorsBytes, SafetensorsFile, writeSafetensorsFile } from './safetensors';
import type { Parameters } from './weights';

/** File names of a module checkpoint folder (the diffusers/transformers layout). */
export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

/**
 * Saves a module as `<dir>/config.json` + `<dir>/<weightsFile>` (default model.safetensors; torch
 * layout, F32), streamed one tensor at a time: the layout of a transformers model or a diffusers
 * component folder (`weightsFile` 'diffusion_pytorch_model.safetensors'). Each file is written
 * atomically (temporary file, then rename), so an interrupted save never leaves a half-written
 * checkpoint under the final names.
 */
export async function saveModule(
  dir: string,
  config: object,
  params: Parameters,
  metadata: Record<string, string> = {},
  weightsFile = WEIGHTS_FILE,
): Promise<void> {
  const { path, utils } = await nodeOnly('saveModule');
  await writeSafetensorsFile(path.join(dir, weightsFile), params.torchShapes(), params.torchData(), metadata);
  utils.writeFileAtomic(path.join(dir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
}

/** Opens a folder written by saveModule: its parsed config and its weights. Close the source after building. */
export async function openModule(dir: string): Promise<{ config: Record<string, unknown>; source: SafetensorsFile }> {
  const { fs, path } = await nodeOnly('openModule');
  const configFile = path.join(dir, CONFIG_FILE);
  if (!fs.existsSync(configFile)) throw new Error(`${configFile}: missing; not a module checkpoint folder`);
  const config = parseJsonObject((await readInputFile(configFile, 'a module config (JSON)')).toString('utf8'), configFile);
  return { config, source: await SafetensorsFile.open(path.join(dir, WEIGHTS_FILE)) };
}

/**
 * The contents of a checkpoint folder's two files: `config.json` as text and the safetensors file
 * as bytes. What a browser fetches (`fetchModuleFiles`) or a user uploads.
 */
export interface ModuleFiles {
  readonly config: string;
  readonly weights: Uint8Array;
}

/**
 * As openModule, from the files' contents. `name` (the folder or URL they came from) and
 * `weightsFile` name the files in errors.
 */
export function openModuleFiles(files: ModuleFiles, name: string, weightsFile = WEIGHTS_FILE): { config: Record<string, unknown>; source: SafetensorsBytes } {
  const configFile = `${name}/${CONFIG_FILE}`;
  const kind = (x: unknown): string => Object.prototype.toString.call(x).slice(8, -1); // 'String', 'Uint8Array', 'ArrayBuffer', … across realms
  if (kind(files?.config) !== 'String') throw new Error(`${configFile}: expected its text (a string), got ${kind(files?.config)}`);
  if (kind(files.weights) !== 'Uint8Array') throw new Error(`${name}/${weightsFile}: expected its bytes (a Uint8Array), got ${kind(files.weights)}`);
  return { config: parseJsonObject(files.config, configFile), source: new SafetensorsBytes(files.weights, `${name}/${weightsFile}`) };
}

/** The `fetch` the URL loaders call: `globalThis.fetch` unless given (tests pass their own). */
export type FetchFunction = (url: string) => Promise<Response>;

/** `base` and path parts joined with single slashes (`base` may be relative: 'models/x', '/models/x/'). */
export function joinUrl(base: string, ...parts: string[]): string {
  return [base.replace(/\/+$/, ''), ...parts].join('/');
}

/**
 * GETs `url` and returns its bytes; with `optional`, an HTTP 404 gives undefined. Any other
 * failure is an error naming the URL and the HTTP status.
 */
export async function fetchFile(url: string, options?: { fetch?: FetchFunction; optional?: false }): Promise<Uint8Array>;
export async function fetchFile(url: string, options: { fetch?: FetchFunction; optional: true }): Promise<Uint8Array | undefined>;
export async function fetchFile(url: string, options: { fetch?: FetchFunction; optional?: boolean }): Promise<Uint8Array | undefined>;
export async function fetchFile(url: string, options: { fetch?: FetchFunction; optional?: boolean } = {}): Promise<Uint8Array | undefined> {
  const get = options.fetch ?? globalThis.fetch;
  if (typeof get !== 'function') throw new Error(`${url}: no fetch function here; pass options.fetch`);
  let response: Response;
  try {
    response = await get(url);
  } catch (e) {
    throw new Error(`${url}: fetch failed (${(e as Error).message})`);
  }
  if (response.status === 404 && options.optional) return undefined;
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** Fetches the checkpoint folder at `url` (`config.json` + `weightsFile`, default model.safetensors). */
export async function fetchModuleFiles(url: string, options: { fetch?: FetchFunction; weightsFile?: string } = {}): Promise<ModuleFiles> {
  const [config, weights] = await Promise.all([
    fetchFile(joinUrl(url, CONFIG_FILE), options),
    fetchFile(joinUrl(url, options.weightsFile ?? WEIGHTS_FILE), options),
  ]);
  return { config: new TextDecoder().decode(config), weights };
}
