// What the browser tests share: Debian's chromium driven by playwright-core (never a downloaded
// browser), and serve.mjs on a free localhost port.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/**
 * Headless, offline, sandboxless (containers), with WebGL and WebGPU on SwiftShader (Chromium's
 * CPU Vulkan driver) where there is no GPU.
 */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-angle=swiftshader',
  '--enable-unsafe-swiftshader',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--disable-gpu-sandbox',
];

/** Chromium with a fresh profile; `close` quits it and removes the profile. */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing; the browser tests drive Debian's chromium: apt-get install chromium`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'png-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
  return {
    context,
    close: async () => {
      await context.close();
      // chromium's helper processes may still be writing their caches for a moment
      fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    },
  };
}

/** serve.mjs on a free port, serving `root` (default the repository root): its first URL, and how to stop it. */
export async function serve(root?: string): Promise<{ origin: string; stop(): void }> {
  const server = spawn(process.execPath, [path.join(__dirname, 'serve.mjs'), '--port', '0', ...(root ? ['--root', root] : [])]);
  const url = await new Promise<string>((resolve, reject) => {
    server.once('error', reject);
    server.once('exit', (code) => reject(new Error(`serve.mjs exited (${code}) before printing its URL`)));
    server.stdout.once('data', (chunk: Buffer) => resolve(String(chunk).split('\n')[0]));
  });
  return { origin: new URL(url).origin, stop: () => server.kill() };
}
