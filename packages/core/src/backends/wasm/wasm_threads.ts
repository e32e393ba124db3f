import * as tf from '@tensorflow/tfjs-core';
import { fnv1a } from '../../fnv1a';
import { importUnbundled, nodeOnly } from '../../node_only';

/**
 * XNNPACK threads for the wasm backend in Node. tfjs-backend-wasm ships a threaded SIMD build whose
 * Emscripten glue runs its pthreads on Node's worker_threads, but tfjs never starts it in Node:
 * 1. its WASM_HAS_MULTITHREAD_SUPPORT flag is false in Node (tfjs issue #3830);
 * 2. it hands Emscripten the worker script and the main script as Blob URLs, which worker_threads
 *    cannot load;
 * 3. its C++ caps the threads at the logical cores ÷ 2 (1 on a 2-core machine).
 * `registerThreadedWasm` replaces the 'wasm' backend's factory with one that starts that build
 * itself: the worker script is written to a file (os.tmpdir()), the main script is the glue's own
 * file, and the core count the C++ reads (the glue's `emscripten_num_logical_cores` import) is
 * 2 × the threads asked for, through Emscripten's `instantiateWasm` hook. The kernels, the heap
 * and BackendWasm are tfjs' own. This leans on the package's internals (wasm-out/, the glue's
 * imports), checked for the one version it was written against: {@link THREADED_WASM_VERSION}.
 *
 * Opt-in: `setBackend('wasm', { threads })` or `PNG_WASM_THREADS`; the default stays 1 thread.
 * In a browser tfjs starts its threaded build itself where the page is cross-origin isolated
 * (COOP/COEP); there `threads` is passed to tfjs' `setThreadsCount`.
 */

/** The tfjs-backend-wasm version whose internals this file was written against. */
export const THREADED_WASM_VERSION = '4.22.0';

/** tfjs starts 8 pthread workers, and its C++ never uses more. */
const MAX_THREADS = 8;

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

type WasmPackage = typeof import('@tensorflow/tfjs-backend-wasm');
/** The Emscripten module the threaded glue builds (what BackendWasm's constructor takes). */
type EmscriptenModule = ConstructorParameters<WasmPackage['BackendWasm']>[0] & {
  cwrap(name: string, returnType: string | null, argTypes: string[]): (...args: number[]) => number | undefined;
};
type ModuleFactory = (config: object) => Promise<EmscriptenModule>;
type Imports = WebAssembly.Imports & { env: Record<string, unknown> };

/**
 * The XNNPACK threads asked for: `threads` when given, else PNG_WASM_THREADS, else undefined (the
 * wasm backend as tfjs starts it: 1 thread in Node). An integer from 1 to 8, or an error naming
 * where the bad value came from.
 */
export function requestedWasmThreads(threads?: number): number | undefined {
  const env = isNode ? process.env.PNG_WASM_THREADS : undefined;
  if (threads === undefined && (env === undefined || env === '')) return undefined;
  const [value, source] = threads !== undefined ? [threads, `setBackend('wasm', { threads: ${threads} })`] : [Number(env), `PNG_WASM_THREADS='${env}'`];
  if (!Number.isInteger(value) || value < 1 || value > MAX_THREADS)
    throw new Error(`${source}: expected a whole number of threads from 1 to ${MAX_THREADS} (tfjs-backend-wasm starts ${MAX_THREADS} workers)`);
  return value;
}

/**
 * Makes the wasm backend run `threads` XNNPACK threads: before its first initialisation, by
 * registering the threaded factory (Node) or tfjs' own thread count (browsers); afterwards, an
 * error unless it already runs that many (a backend's threads are fixed for the process).
 */
export async function registerThreadedWasm(threads: number): Promise<void> {
  const wasm: WasmPackage = await import('@tensorflow/tfjs-backend-wasm');
  if (wasmStarted()) {
    const running = wasm.getThreadsCount();
    if (running !== threads)
      throw new Error(
        `wasm threads ${threads}: the wasm backend already runs ${running} thread${running === 1 ? '' : 's'} in this process, and its threads are fixed when it first starts; ask for them at the first setBackend('wasm') (or set PNG_WASM_THREADS before it)`,
      );
    return;
  }
  if (!isNode) {
    wasm.setThreadsCount(threads);
    return;
  }
  if (threads === 1) return; // tfjs' own start: the single-threaded SIMD build
  if (process.env.PNG_NATIVE === '1')
    throw new Error(
      `wasm threads ${threads} with PNG_NATIVE=1: the native kernels run the convolutions and products on all cores already, and read the wasm heap as an ArrayBuffer, which the threaded build shares; use one or the other`,
    );
  if (wasm.version_wasm !== THREADED_WASM_VERSION)
    throw new Error(
      `wasm threads in Node start tfjs-backend-wasm's threaded build through its internals, checked for version ${THREADED_WASM_VERSION}; this is ${wasm.version_wasm}: install @tensorflow/tfjs-backend-wasm@${THREADED_WASM_VERSION}, or leave the threads at 1`,
    );
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', () => startThreadedWasm(wasm, threads), 2); // tfjs' own priority for wasm
}

/** Whether the wasm backend has started in this process (tf.findBackend would start it). */
export function wasmStarted(): boolean {
  return 'wasm' in (tf.engine() as unknown as { registry: Record<string, unknown> }).registry;
}

/** tfjs-backend-wasm's threaded SIMD build started on worker_threads, as BackendWasm with `threads` XNNPACK threads. */
async function startThreadedWasm(wasm: WasmPackage, threads: number): Promise<tf.KernelBackend> {
  const { fs, path, utils } = await nodeOnly('wasm threads');
  const glue = 'tfjs-backend-wasm-threaded-simd';
  const factory = defaultExport<ModuleFactory>(await importUnbundled(`@tensorflow/tfjs-backend-wasm/wasm-out/${glue}.js`));
  const workerScript = defaultExport<{ wasmWorkerContents?: unknown }>(
    await importUnbundled(`@tensorflow/tfjs-backend-wasm/wasm-out/${glue}.worker.js`),
  ).wasmWorkerContents;
  if (typeof factory !== 'function' || typeof workerScript !== 'string')
    throw new Error(
      `wasm threads: @tensorflow/tfjs-backend-wasm/wasm-out/${glue}.js or .worker.js is not what version ${THREADED_WASM_VERSION} ships; leave the threads at 1`,
    );
  // The worker script is a template literal in its module: its string literals' "\n" are real
  // newlines there, escaped back as tfjs does before it makes the Blob.
  const source = workerScript.replace(/\n/g, '\\n');
  const workerFile = path.join(
    (process.getBuiltinModule('node:os') as typeof import('node:os')).tmpdir(),
    `png-${glue}-${THREADED_WASM_VERSION}-${fnv1a(source).toString(16).padStart(8, '0')}.worker.cjs`, // named by its contents
  );
  if (!fs.existsSync(workerFile)) utils.writeFileAtomic(workerFile, source);

  let folder = ''; // the glue's own folder, which Emscripten passes to locateFile
  let failed: (e: Error) => void = () => {};
  const failure = new Promise<never>((_, reject) => {
    failed = reject;
  });
  const config: Record<string, unknown> = {
    locateFile(file: string, prefix: string) {
      folder = prefix;
      config.mainScriptUrlOrBlob = `${prefix}${glue}.js`; // what the workers import: the glue's file
      return file.endsWith('.worker.js') ? workerFile : prefix + file;
    },
    instantiateWasm(imports: Imports, receiveInstance: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void) {
      // The C++ runs min(threads asked, cores ÷ 2, 8) threads, the cores read once at start.
      imports.env.emscripten_num_logical_cores = () => 2 * threads;
      const binary = `${folder}${glue}.wasm`;
      fs.promises
        .readFile(binary)
        .then((bytes) => WebAssembly.instantiate(bytes, imports))
        .then(({ instance, module }) => receiveInstance(instance, module))
        .catch((e) => failed(new Error(`wasm threads: ${binary} did not instantiate: ${e instanceof Error ? e.message : e}`)));
      return {};
    },
  };
  const module = await Promise.race([factory(config), failure]);
  // What tfjs' own init adds to the module for BackendWasm (backend_wasm.js, init()).
  Object.assign(module, {
    tfjs: {
      init: module.cwrap('init', null, []),
      initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
      getThreadsCount: module.cwrap('get_threads_count', 'number', []),
      registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
      disposeData: module.cwrap('dispose_data', null, ['number']),
      dispose: module.cwrap('dispose', null, []),
    },
  });
  wasm.setThreadsCount(threads);
  const backend = new wasm.BackendWasm(module); // starts the XNNPACK threads
  // Emscripten refs a worker while it runs a pthread, and XNNPACK's run for the backend's life:
  // unref'd, they no longer keep Node from exiting when the program is done.
  const { PThread } = module as unknown as { PThread: { runningWorkers: Array<{ unref(): void }>; unusedWorkers: Array<{ unref(): void }> } };
  for (const worker of [...PThread.runningWorkers, ...PThread.unusedWorkers]) worker.unref();
  return backend;
}

/** A CommonJS module's exports, imported from ESM (`default`) or from CommonJS (the object itself). */
function defaultExport<T>(imported: unknown): T {
  return ((imported as { default?: T }).default ?? imported) as T;
}
