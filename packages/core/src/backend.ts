import * as tf from '@tensorflow/tfjs-core';
import './gradients';
import { registerWasmTrainingKernels } from './wasm_kernels';

export type BackendName = 'wasm' | 'cpu' | 'webgpu';
export const BACKENDS: readonly BackendName[] = ['wasm', 'cpu', 'webgpu'];

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

/**
 * Registers and selects a tfjs backend: `wasm` (the default: SIMD, fast), `cpu` (pure JS, the
 * reference) or `webgpu`. Backend packages are optional peers, imported on demand; a missing one
 * is an error that says which package to install.
 */
export async function setBackend(name: BackendName = 'wasm'): Promise<BackendName> {
  if (!BACKENDS.includes(name)) throw new Error(`unknown backend '${name}'; expected one of ${BACKENDS.join(', ')}`);
  if (tf.getBackend() === name) return name;
  if (!tf.findBackendFactory(name)) await registerBackend(name);
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`the '${name}' backend failed to initialise` + (name === 'webgpu' ? ': ' + webgpuHelp() : ''));
  await tf.ready();
  if (name === 'wasm') registerWasmTrainingKernels(); // gradient kernels wasm lacks (idempotent)
  return name;
}

async function registerBackend(name: BackendName): Promise<void> {
  const pkg = `@tensorflow/tfjs-backend-${name}`;
  try {
    if (name === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
    else if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    else await registerWebgpu();
  } catch (e) {
    if ((e as { code?: string }).code === 'MODULE_NOT_FOUND' || /Cannot find module|Failed to resolve/.test(String(e))) {
      throw new Error(`the '${name}' backend needs the package ${name === 'webgpu' ? `${pkg} (and, in Node, 'webgpu')` : pkg}: npm install ${pkg}@4.22.0`);
    }
    throw e;
  }
}

async function registerWebgpu(): Promise<void> {
  if (isNode && typeof (globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu === 'undefined') {
    // Dawn for Node: provides navigator.gpu.
    const dawn = (await import(/* webpackIgnore: true */ 'webgpu' as string)) as { create: (flags: string[]) => unknown; globals: object };
    Object.assign(globalThis, dawn.globals);
    const nav = ((globalThis as { navigator?: object }).navigator ??= {}) as { gpu?: unknown };
    if (!('gpu' in nav) || !nav.gpu) Object.defineProperty(nav, 'gpu', { value: dawn.create([]), configurable: true });
  }
  const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter(): Promise<unknown> } } }).navigator?.gpu;
  const adapter = gpu ? await gpu.requestAdapter() : null;
  if (!adapter) throw new Error(`no WebGPU adapter: ${webgpuHelp()}`);
  await import(/* webpackIgnore: true */ '@tensorflow/tfjs-backend-webgpu' as string);
}

function webgpuHelp(): string {
  return isNode
    ? 'Node needs a Vulkan driver for Dawn; without a GPU install Debian\'s chromium (its SwiftShader driver, /usr/lib/chromium/vk_swiftshader_icd.json): apt-get install chromium'
    : 'this browser exposes no WebGPU adapter (try --enable-unsafe-webgpu, or use the wasm backend)';
}
