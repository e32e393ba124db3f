import {
  SafetensorsError,
  SafetensorsFile,
  nodeOnly,
  openModuleFiles,
  parseJsonObject,
  readInputFile,
  withLoadProgress,
  type LoadProgress,
  type ModuleFiles,
  type TensorInfo,
  type WeightSource,
} from '@png/core';

/**
 * Reading one component folder of a diffusers pipeline (`unet/`, `vae/`, `text_encoder/`):
 * `config.json` plus a safetensors checkpoint, optionally sharded
 * (`*.safetensors.index.json`) or in a variant (`diffusion_pytorch_model.fp16.safetensors`).
 */
export interface ComponentOptions {
  /** Weight variant, e.g. 'fp16' picks `<name>.fp16.safetensors`. */
  readonly variant?: string;
  /** Called after each tensor read from a weights file (fromPretrained: long loads of multi-GB files). */
  readonly progressCallback?: (progress: LoadProgress) => void;
}

/** Options of the components' `fromFiles`. */
export interface ComponentFilesOptions extends ComponentOptions {
  /** Where the files came from (a folder or URL), named in errors; default the component's folder name ('unet', 'vae', 'text_encoder'). */
  readonly name?: string;
}

/** Reads and parses `<dir>/config.json`, with errors that name the file. */
export async function readConfigJson(dir: string): Promise<Record<string, unknown>> {
  const { fs, path } = await nodeOnly('readConfigJson');
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(dir)) throw new Error(`${dir}: no such folder; pass a component folder of a diffusers pipeline (with config.json and *.safetensors)`);
  if (!fs.existsSync(file)) throw new Error(`${file}: missing; a component folder needs its config.json`);
  return parseJsonObject((await readInputFile(file, 'a component config (JSON)')).toString('utf8'), file);
}

/** Opens the checkpoint `<dir>/<weightsName>[.<variant>].safetensors`, or its sharded index. */
export async function openWeights(dir: string, weightsName: string, options: ComponentOptions = {}): Promise<WeightSource> {
  const { fs, path } = await nodeOnly('openWeights');
  const single = path.join(dir, componentWeightsFile(weightsName, options));
  const { progressCallback } = options;
  const reported = (source: WeightSource) => (progressCallback ? withLoadProgress(source, progressCallback) : source);
  if (fs.existsSync(single)) return reported(await SafetensorsFile.open(single));
  const index = `${single}.index.json`;
  if (fs.existsSync(index)) return reported(await ShardedSource.open(index));
  const present = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.(safetensors|bin|ckpt|pt)$/.test(f)) : [];
  const hint = present.some((f) => !f.endsWith('.safetensors'))
    ? ' PyTorch pickle checkpoints (.bin/.ckpt) are not read; convert them to safetensors.'
    : present.length
      ? ` Found: ${present.join(', ')}${options.variant ? '' : " (pass variant: 'fp16' for *.fp16.safetensors)"}.`
      : '';
  throw new Error(`${single}: missing.${hint}`);
}

/** Several safetensors shards behind one `*.safetensors.index.json` (`weight_map: {key: file}`). */
class ShardedSource implements WeightSource {
  private constructor(
    readonly name: string,
    private readonly shards: Map<string, WeightSource>,
    private readonly owner: Map<string, WeightSource>,
  ) {}

  static async open(indexFile: string): Promise<ShardedSource> {
    const { path } = await nodeOnly('a sharded safetensors checkpoint');
    const text = (await readInputFile(indexFile, 'a safetensors shard index (JSON)')).toString('utf8');
    let weightMap: Record<string, string>;
    try {
      weightMap = JSON.parse(text).weight_map;
    } catch (e) {
      throw new SafetensorsError(indexFile, `not a valid index (${(e as Error).message})`);
    }
    if (!weightMap || typeof weightMap !== 'object') throw new SafetensorsError(indexFile, 'has no weight_map');
    const shards = new Map<string, WeightSource>();
    const owner = new Map<string, WeightSource>();
    try {
      for (const [key, file] of Object.entries(weightMap)) {
        let shard = shards.get(file);
        if (!shard) {
          shard = await SafetensorsFile.open(path.join(path.dirname(indexFile), file));
          shards.set(file, shard);
        }
        if (!shard.info(key)) throw new SafetensorsError(shard.name, `index ${indexFile} places '${key}' here, but the shard lacks it`);
        owner.set(key, shard);
      }
    } catch (e) {
      for (const s of shards.values()) s.close();
      throw e;
    }
    return new ShardedSource(indexFile, shards, owner);
  }

  keys(): string[] {
    return [...this.owner.keys()];
  }
  info(key: string): TensorInfo | undefined {
    return this.owner.get(key)?.info(key);
  }
  read(key: string): Float32Array | Int32Array {
    return this.shard(key).read(key);
  }
  readFloatsInto(key: string, dest: Float32Array): void {
    this.shard(key).readFloatsInto(key, dest);
  }
  private shard(key: string): WeightSource {
    const shard = this.owner.get(key);
    if (!shard) throw new SafetensorsError(this.name, `no tensor '${key}'`);
    return shard;
  }
  close(): void {
    for (const s of this.shards.values()) s.close();
  }
}

/**
 * As readConfigJson + openWeights, from the contents of a component folder's files (`config.json`
 * and `<weightsName>[.<variant>].safetensors`), for `fromFiles` in browsers.
 */
export function openComponentFiles(
  files: ModuleFiles,
  weightsName: string,
  defaultName: string,
  options: ComponentFilesOptions,
): { config: Record<string, unknown>; source: WeightSource } {
  return openModuleFiles(files, options.name ?? defaultName, componentWeightsFile(weightsName, options));
}

/** The file name of a component's single-file checkpoint: `<weightsName>[.<variant>].safetensors`. */
export function componentWeightsFile(weightsName: string, options: ComponentOptions = {}): string {
  return `${options.variant ? `${weightsName}.${options.variant}` : weightsName}.safetensors`;
}
