import * as tf from '@tensorflow/tfjs-core';
import '../gradients';
import { importUnbundled } from '../node_only';
import { portableStrategy, type BackendStrategy } from './backend_strategy';
import { nativeKernelsActive, useNativeKernels } from './wasm/native_kernels';
import { registerWasmTrainingKernels } from './wasm/wasm_kernels';
import { nativeWasmStrategy, wasmStrategy } from './wasm/wasm_strategy';
import { registerThreadedWasm, requestedWasmThreads } from './wasm/wasm_threads';

export type BackendName = 'wasm' | 'cpu' | 'webgpu' | 'webgl';
export const BACKENDS: readonly BackendName[] = ['wasm', 'cpu', 'webgpu', 'webgl'];

/** The backends with a strategy of their own; every other runs `portableStrategy`. */
const STRATEGIES: Readonly<Record<string, BackendStrategy>> = { wasm: wasmStrategy };

/** How the nn primitives compute on the current tfjs backend (see BackendStrategy). */
export function backendStrategy(): BackendStrategy {
  const name = tf.getBackend();
  if (name === 'wasm' && nativeKernelsActive()) return nativeWasmStrategy;
  return STRATEGIES[name] ?? portableStrategy;
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

/** How `setBackend` starts a backend. */
export interface BackendOptions {
  /**
   * wasm: XNNPACK threads (1–8), fixed when the wasm backend first starts in the process; default
   * PNG_WASM_THREADS, else 1 in Node. In Node, more than 1 starts tfjs-backend-wasm's threaded
   * build on worker_threads (see wasm_threads.ts); in browsers, tfjs' own threaded build where the
   * page is cross-origin isolated.
   */
  threads?: number;
}

/**
 * Registers and selects a tfjs backend: `wasm` (the default: SIMD, fast), `cpu` (pure JS, the
 * reference), `webgpu` or `webgl` (browsers only). On wasm in Node, the optional
 * `@png/native-kernels` (oneDNN, all cores) computes the convolutions and matrix products when
 * `PNG_NATIVE=1` (opt-in; see native_kernels.ts); `wasmComputePath()` says which path was taken.
 * Backend packages are optional peers, imported on demand; a missing one is an error that says
 * which package to install.
 *
 * `webgpu` in Node runs on Dawn (the npm package 'webgpu') over a Vulkan driver. On Linux without
 * one, Debian's chromium package brings a CPU one, SwiftShader: when no driver is chosen
 * (VK_ICD_FILENAMES / VK_DRIVER_FILES unset) and none is installed system-wide, setBackend points
 * VK_ICD_FILENAMES at /usr/lib/chromium/vk_swiftshader_icd.json, and loads chromium's Vulkan
 * loader if the system has none (libvulkan1). No adapter is an error naming what is missing.
 */
export async function setBackend(name: BackendName = 'wasm', options: BackendOptions = {}): Promise<BackendName> {
  if (!BACKENDS.includes(name)) throw new Error(`unknown backend '${name}'; expected one of ${BACKENDS.join(', ')}`);
  if (options.threads !== undefined && name !== 'wasm')
    throw new Error(`setBackend('${name}', { threads: ${options.threads} }): threads are an option of the wasm backend only`);
  const threads = name === 'wasm' ? requestedWasmThreads(options.threads) : undefined;
  if (name === 'webgl' && isNode) {
    throw new Error(
      "the 'webgl' backend needs a browser's WebGL and is not available in Node (tfjs' headless-gl binding is not supported): use setBackend('wasm'), the fastest on the CPU, or setBackend('webgpu') for a GPU (Dawn, the 'webgpu' package)",
    );
  }
  if (!tf.findBackendFactory(name)) await registerBackend(name);
  if (threads !== undefined) await registerThreadedWasm(threads);
  if (tf.getBackend() !== name) {
    // Shapes as uniforms: one shader per op and rank, not one per shape (measured: a PngGrounder
    // forward compiles 249 WebGL programs instead of 730; compiling dominates its first call).
    if (name === 'webgl') tf.env().set('WEBGL_USE_SHAPES_UNIFORMS', true);
    const ok = await tf.setBackend(name);
    if (!ok)
      throw new Error(`the '${name}' backend failed to initialise${name === 'webgpu' ? `: ${webgpuHelp()}` : name === 'webgl' ? `: ${WEBGL_HELP}` : ''}`);
    await tf.ready();
    const emulator = gpuEmulator();
    if (emulator) {
      console.warn(
        `setBackend('${name}'): the ${name === 'webgpu' ? 'WebGPU adapter' : 'WebGL renderer'} is ${emulator}, a GPU emulated on the CPU: expect it to run ${EMULATED_SLOWDOWN[name]} slower than the wasm backend (setBackend('wasm'))`,
      );
    }
  }
  // idempotent, and also when tfjs had already picked this backend by itself
  if (name === 'wasm') {
    registerWasmTrainingKernels(); // gradient kernels wasm lacks
    await useNativeKernels((await import('@tensorflow/tfjs-backend-wasm')).getThreadsCount()); // in Node, where @png/native-kernels is built: see wasmComputePath()
  }
  if (name === 'cpu') registerCpuKernelFixes(); // a wrong tfjs-backend-cpu gradient
  return name;
}

async function registerBackend(name: BackendName): Promise<void> {
  try {
    if (name === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
    else if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    else if (name === 'webgl') await importUnbundled('@tensorflow/tfjs-backend-webgl');
    else await registerWebgpu();
  } catch (e) {
    const missing = BACKEND_PACKAGES[name].find((pkg) => isMissingPackage(e, pkg));
    if (!missing) throw e;
    if (!isNode && (missing === '@tensorflow/tfjs-backend-webgpu' || missing === '@tensorflow/tfjs-backend-webgl')) {
      // setBackend imports them by a specifier bundlers do not follow (see node_only.ts)
      throw new Error(
        `the '${name}' backend needs ${missing} in your bundle: import '${missing}' before setBackend('${name}') (npm install ${missing}@${PEER_VERSIONS[missing]})`,
        {
          cause: e,
        },
      );
    }
    const needed = BACKEND_PACKAGES[name].filter((pkg) => isNode || pkg !== 'webgpu');
    throw new Error(
      `the '${name}' backend needs the package ${missing}, which is not installed: npm install ${needed.map((pkg) => `${pkg}@${PEER_VERSIONS[pkg]}`).join(' ')}`,
      {
        cause: e,
      },
    );
  }
}

/** The optional peer packages each backend imports (`webgpu`, Dawn, in Node only). */
const BACKEND_PACKAGES: Readonly<Record<BackendName, readonly string[]>> = {
  cpu: ['@tensorflow/tfjs-backend-cpu'],
  wasm: ['@tensorflow/tfjs-backend-wasm'],
  webgpu: ['@tensorflow/tfjs-backend-webgpu', 'webgpu'],
  webgl: ['@tensorflow/tfjs-backend-webgl'],
};
const PEER_VERSIONS: Readonly<Record<string, string>> = {
  '@tensorflow/tfjs-backend-cpu': '4.22.0',
  '@tensorflow/tfjs-backend-wasm': '4.22.0',
  '@tensorflow/tfjs-backend-webgpu': '4.22.0',
  '@tensorflow/tfjs-backend-webgl': '4.22.0',
  webgpu: '0.6.2',
};

/**
 * Whether an import failed because the package `pkg` itself is not installed: Node's require
 * (MODULE_NOT_FOUND, "Cannot find module 'pkg'"), Node's ESM loader (ERR_MODULE_NOT_FOUND, "Cannot
 * find package 'pkg' imported from …") and browsers ("Failed to resolve module specifier
 * \"pkg\""). A file missing *inside* an installed package names a path, not `pkg`, and is not this.
 */
function isMissingPackage(e: unknown, pkg: string): boolean {
  const message = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: unknown } | null)?.code;
  const notFound = code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND' || /Cannot find (module|package)|Failed to resolve/.test(message);
  return notFound && (message.includes(`'${pkg}'`) || message.includes(`"${pkg}"`));
}

/** Adapters that emulate a GPU on the CPU, by what their adapter info names. */
const GPU_EMULATORS = /swiftshader|llvmpipe|lavapipe|softpipe|microsoft basic render|warp/i;

/** How much slower than wasm the grounding page runs on each GPU backend over SwiftShader (webgl: examples/browser/README.md). */
const EMULATED_SLOWDOWN: Readonly<Record<string, string>> = { webgpu: '~100×', webgl: '5–20×' };

/** WEBGL_debug_renderer_info's UNMASKED_RENDERER_WEBGL. */
const UNMASKED_RENDERER_WEBGL = 0x9246;

/**
 * The name of the CPU emulator behind the current GPU backend (SwiftShader, llvmpipe, …): from
 * the webgpu adapter's info, or the renderer the webgl context reports. Null when the backend is
 * neither or runs on a GPU.
 */
export function gpuEmulator(): string | null {
  let fields: Array<string | undefined> = [];
  if (tf.getBackend() === 'webgpu') {
    const info = (tf.backend() as { adapterInfo?: { vendor?: string; architecture?: string; device?: string; description?: string } }).adapterInfo ?? {};
    fields = [info.architecture, info.device, info.description, info.vendor];
  } else if (tf.getBackend() === 'webgl') {
    const gl = (tf.backend() as { gpgpu?: { gl: WebGLRenderingContext } }).gpgpu?.gl;
    // Browsers that withhold the unmasked renderer report a generic one in RENDERER.
    if (gl) fields = [gl.getExtension('WEBGL_debug_renderer_info') ? gl.getParameter(UNMASKED_RENDERER_WEBGL) : undefined, gl.getParameter(gl.RENDERER)];
  }
  const named = fields.find((field) => field && GPU_EMULATORS.test(field));
  return named ? (named.match(GPU_EMULATORS)?.[0] ?? named) : null;
}

type Gpu = { requestAdapter(options?: object): Promise<unknown> };
type Dawn = { create: (flags: string[]) => Gpu; globals: object };

/** Where Debian's (and Ubuntu's) chromium package puts its SwiftShader Vulkan driver and loader. */
const CHROMIUM_SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const CHROMIUM_VULKAN_LOADER = '/usr/lib/chromium/libvulkan.so.1';
const RTLD_LAZY = 0x1;
const RTLD_NOW_GLOBAL_NODELETE = 0x2 | 0x100 | 0x1000; // glibc's values; RTLD_NODELETE is not in os.constants.dlopen
/** The folders the Vulkan loader searches for driver manifests (besides $XDG_* ones). */
const VULKAN_ICD_DIRS = ['/etc/vulkan/icd.d', '/usr/share/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/usr/local/etc/vulkan/icd.d'];

async function registerWebgpu(): Promise<void> {
  const g = globalThis as { navigator?: { gpu?: Gpu } };
  let notes: string[] = [];
  if (isNode && !g.navigator?.gpu) {
    // Dawn for Node (the 'webgpu' package) provides navigator.gpu.
    const dawn = await importDawn();
    Object.assign(globalThis, dawn.globals);
    notes = prepareVulkan();
    g.navigator ??= {};
    const nav = g.navigator;
    Object.defineProperty(nav, 'gpu', { value: dawn.create([]), configurable: true, writable: true });
  }
  const gpu = g.navigator?.gpu;
  const adapter = gpu ? await gpu.requestAdapter() : null;
  if (!adapter) {
    // Drop Dawn's instance: a later call starts afresh (after a driver is installed), and the
    // instance would otherwise keep Node from exiting.
    if (isNode && g.navigator) delete g.navigator.gpu;
    throw new Error(`no WebGPU adapter: ${webgpuHelp(notes)}`);
  }
  await importUnbundled('@tensorflow/tfjs-backend-webgpu');
}

/**
 * Imports the 'webgpu' package (an ES module wrapping Dawn's node addon). jest's CommonJS runtime
 * cannot evaluate ES modules, so there the addon itself is loaded, from where the package keeps it
 * (dist/<platform>-<arch>/dawn.node).
 */
async function importDawn(): Promise<Dawn> {
  try {
    return await importUnbundled<Dawn>('webgpu');
  } catch (e) {
    const esm =
      e instanceof SyntaxError ||
      (e as { code?: string }).code === 'ERR_REQUIRE_ESM' ||
      /Must use import to load ES Module|Cannot use import statement/.test(String(e));
    if (!esm || typeof require !== 'function') throw e;
    const dir = require.resolve('webgpu/package.json').replace(/package\.json$/, '');
    const addon = `${dir}dist/${process.platform}-${process.platform === 'darwin' ? 'universal' : process.arch}/dawn.node`;
    const mod = { exports: {} as Dawn };
    process.dlopen(mod, addon);
    return mod.exports;
  }
}

/**
 * Linux without a GPU driver: makes chromium's SwiftShader (a CPU Vulkan driver) visible to Dawn.
 * - Driver: when the user chose none (VK_ICD_FILENAMES and VK_DRIVER_FILES unset) and no driver
 *   manifest is installed system-wide, sets VK_ICD_FILENAMES to chromium's manifest, if present.
 * - Loader: when the system has no Vulkan loader (Debian's libvulkan1), loads chromium's copy of
 *   it, so that Dawn's dlopen('libvulkan.so.1') finds it.
 * Returns what is missing, for the error message.
 */
function prepareVulkan(): string[] {
  const fs = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule?.('node:fs') as typeof import('node:fs') | undefined;
  if (process.platform !== 'linux' || !fs) return [];
  const missing: string[] = [];
  const env = nativeEnv();
  const chosenBy = env.VK_ICD_FILENAMES !== undefined ? 'VK_ICD_FILENAMES' : env.VK_DRIVER_FILES !== undefined ? 'VK_DRIVER_FILES' : null;
  const chosen = chosenBy ? env[chosenBy] : undefined;
  if (chosenBy && chosen !== undefined) {
    const absent = chosen.split(':').filter((f) => f && !fs.existsSync(f));
    if (absent.length) missing.push(`the Vulkan driver manifest ${absent.join(', ')} named by ${chosenBy} does not exist`);
  } else {
    const xdg = [env.XDG_CONFIG_HOME, env.XDG_DATA_HOME, ...(env.XDG_CONFIG_DIRS ?? '').split(':'), ...(env.XDG_DATA_DIRS ?? '').split(':')];
    const dirs = [...VULKAN_ICD_DIRS, ...xdg.filter(Boolean).map((d) => `${d}/vulkan/icd.d`)];
    const systemDriver = dirs.some((d) => fs.existsSync(d) && fs.readdirSync(d).some((f) => f.endsWith('.json')));
    if (!systemDriver) {
      if (fs.existsSync(CHROMIUM_SWIFTSHADER_ICD)) env.VK_ICD_FILENAMES = process.env.VK_ICD_FILENAMES = CHROMIUM_SWIFTSHADER_ICD;
      else missing.push('no Vulkan driver is installed');
    }
  }
  // Neither file is a Node addon: process.dlopen throws "did not self-register" once the library
  // has loaded, and "cannot open shared object file" when it is not found.
  const dlopen = (file: string, flags = RTLD_LAZY): boolean => {
    try {
      process.dlopen({ exports: {} }, file, flags);
      return true;
    } catch (e) {
      return !/cannot open shared object/.test(String(e));
    }
  };
  if (!dlopen('libvulkan.so.1')) {
    // RTLD_NODELETE keeps chromium's loader in the process after Node's dlclose.
    if (!fs.existsSync(CHROMIUM_VULKAN_LOADER) || !dlopen(CHROMIUM_VULKAN_LOADER, RTLD_NOW_GLOBAL_NODELETE))
      missing.push('no Vulkan loader (libvulkan.so.1) is installed');
  }
  return missing;
}

/**
 * The environment that native code (the Vulkan loader) reads: `process.env`, except where a sandbox
 * gives scripts a copy of `process` (jest's test environment), whose `env` never reaches the C
 * environment. The host realm's `process` is reached through the constructor of a host function.
 */
function nativeEnv(): NodeJS.ProcessEnv {
  try {
    const HostFunction = process.dlopen.constructor as FunctionConstructor;
    return (HostFunction('return process')() as NodeJS.Process).env;
  } catch {
    return process.env; // code generation from strings disallowed: no sandbox to see through either
  }
}

function webgpuHelp(notes: string[] = []): string {
  return isNode
    ? `${notes.length ? `${notes.join('; ')}. ` : ''}Dawn (the 'webgpu' package) needs a Vulkan driver. Without a GPU, install Debian's chromium for its SwiftShader CPU driver (${CHROMIUM_SWIFTSHADER_ICD}, found automatically): apt-get install chromium; or install your GPU's Vulkan driver and the loader (apt-get install libvulkan1 mesa-vulkan-drivers)`
    : 'this browser exposes no WebGPU adapter (try --enable-unsafe-webgpu, or use the wasm backend)';
}

const WEBGL_HELP = "this browser gives no WebGL context (WebGL disabled, or no GPU and no software fallback): use setBackend('wasm')";

/**
 * Kernels of @tensorflow/tfjs-backend-cpu 4.22.0 that give wrong results, replaced (idempotent):
 *
 * - `ResizeNearestNeighborGrad` — the gradient of nearest-neighbour resizing (the UNet's
 *   Upsample2D). tfjs' kernel steps through dy's batch with the stride of the (smaller) input, so
 *   every sample after the first gets the wrong gradient. Here: a plain loop, each output position
 *   adding its dy to the input position the forward kernel read (same index rule).
 */
function registerCpuKernelFixes(): void {
  const existing = tf.getKernel('ResizeNearestNeighborGrad', 'cpu');
  if ((existing as { png?: boolean } | undefined)?.png) return;
  if (existing) tf.unregisterKernel('ResizeNearestNeighborGrad', 'cpu');
  tf.registerKernel({
    kernelName: 'ResizeNearestNeighborGrad',
    backendName: 'cpu',
    kernelFunc: resizeNearestNeighborGradCpu,
    png: true,
  } as unknown as tf.KernelConfig);
}

/** The part of tfjs-backend-cpu's MathBackendCPU used here. */
interface CpuBackend {
  data: { get(dataId: tf.DataId): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
}

/**
 * Source index of each output position of tfjs' ResizeNearestNeighbor along one axis (tfjs-core's
 * reference rule: alignCorners maps corner to corner and rounds; halfPixelCenters samples at +0.5).
 */
function nearestSource(inSize: number, outSize: number, alignCorners: boolean, halfPixelCenters: boolean): Int32Array {
  const ratio = (alignCorners && outSize > 1 ? inSize - 1 : inSize) / (alignCorners && outSize > 1 ? outSize - 1 : outSize);
  return Int32Array.from({ length: outSize }, (_, o) => {
    const frac = halfPixelCenters ? ratio * (o + 0.5) : ratio * o;
    const src = Math.min(inSize - 1, alignCorners ? Math.round(frac) : Math.floor(frac));
    return halfPixelCenters ? Math.max(0, src) : src;
  });
}

function resizeNearestNeighborGradCpu({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: object; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const be = backend as CpuBackend;
  const { images, dy } = inputs as { images: tf.TensorInfo; dy: tf.TensorInfo };
  const { alignCorners, halfPixelCenters } = (attrs ?? {}) as { alignCorners: boolean; halfPixelCenters: boolean };
  const [b, hi, wi, c] = images.shape;
  const [, ho, wo] = dy.shape;
  const rows = nearestSource(hi, ho, alignCorners, halfPixelCenters);
  const cols = nearestSource(wi, wo, alignCorners, halfPixelCenters);
  const g = be.data.get(dy.dataId).values;
  const dx = new Float32Array(b * hi * wi * c);
  for (let n = 0; n < b; n++)
    for (let y = 0; y < ho; y++)
      for (let x = 0; x < wo; x++) {
        const src = ((n * ho + y) * wo + x) * c;
        const dst = ((n * hi + rows[y]) * wi + cols[x]) * c;
        for (let k = 0; k < c; k++) dx[dst + k] += g[src + k];
      }
  return be.makeTensorInfo([b, hi, wi, c], 'float32', dx);
}
