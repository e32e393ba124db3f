// The webgpu backend in Node: Dawn (the 'webgpu' package) over a Vulkan driver; without a GPU,
// chromium's SwiftShader (apt-get install chromium), which setBackend finds by itself.
import * as tf from '@tensorflow/tfjs-core';
import { setBackend, gpuEmulator } from './backend';

/**
 * The process's own environment (what the Vulkan loader reads). jest gives tests a copy of
 * `process`, whose `env` does not reach native code.
 */
const nativeEnv = ((process.dlopen.constructor as FunctionConstructor)('return process')() as NodeJS.Process).env;

describe('setBackend("webgpu") in Node', () => {
  it('without a Vulkan driver, fails naming what is missing and how to install it', async () => {
    const saved = nativeEnv.VK_ICD_FILENAMES;
    nativeEnv.VK_ICD_FILENAMES = process.env.VK_ICD_FILENAMES = '/nonexistent/vk_icd.json';
    try {
      await expect(setBackend('webgpu')).rejects.toThrow(
        /^no WebGPU adapter: the Vulkan driver manifest \/nonexistent\/vk_icd\.json named by VK_ICD_FILENAMES does not exist\. .*needs a Vulkan driver.*apt-get install chromium/,
      );
    } finally {
      if (saved === undefined) delete nativeEnv.VK_ICD_FILENAMES;
      else nativeEnv.VK_ICD_FILENAMES = saved;
      process.env.VK_ICD_FILENAMES = saved;
      if (saved === undefined) delete process.env.VK_ICD_FILENAMES;
    }
    expect(tf.getBackend()).not.toBe('webgpu');
  });

  it('then finds an adapter (a GPU, or SwiftShader) and computes, warning when the adapter is a CPU emulator', async () => {
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => {});
    await setBackend('webgpu'); // no adapter: fails, saying which driver to install
    expect(tf.getBackend()).toBe('webgpu');
    const info = (tf.backend() as unknown as { adapterInfo: { vendor?: string; architecture?: string } }).adapterInfo;
    const swiftShader = /swiftshader/i.test(`${info.vendor} ${info.architecture}`);
    expect(gpuEmulator()).toBe(swiftShader ? info.architecture : null);
    expect(warn.mock.calls.map((c) => String(c[0])).filter((m) => m.includes('a GPU emulated on the CPU'))).toHaveLength(swiftShader ? 1 : 0);
    warn.mockRestore();
    console.log(`webgpu adapter: vendor '${info.vendor}', architecture '${info.architecture}'; VK_ICD_FILENAMES=${nativeEnv.VK_ICD_FILENAMES ?? '(unset)'}`);
    const y = tf.matMul(tf.ones([64, 32]), tf.fill([32, 16], 0.5));
    expect(Array.from(await y.data()).every((v) => v === 16)).toBe(true);
    tf.dispose(y);
  });
});
