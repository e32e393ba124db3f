// What only Node has, reached without an import a bundler would follow: a browser bundle of
// @png/core (and of the packages over it) never pulls in fs, path, @png/node-utils or Dawn.

/** The Node modules the file loaders and writers use. */
export interface NodeOnlyModules {
  readonly fs: typeof import('node:fs');
  readonly path: typeof import('node:path');
  readonly utils: typeof import('@png/node-utils');
}

/**
 * Node's `fs` and `path` (through `process.getBuiltinModule`, Node ≥ 20.16) and `@png/node-utils`
 * (through {@link importUnbundled}). Outside Node, an error naming `what` needs the file system.
 */
export async function nodeOnly(what: string): Promise<NodeOnlyModules> {
  const getBuiltinModule = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
  if (!getBuiltinModule) {
    throw new Error(
      `${what} reads or writes files, which needs Node ≥ 20.16; in a browser, load over HTTP instead (DiffusionBackbone.fromUrl, fetchModuleFiles)`,
    );
  }
  return {
    fs: getBuiltinModule('node:fs') as NodeOnlyModules['fs'],
    path: getBuiltinModule('node:path') as NodeOnlyModules['path'],
    utils: await importUnbundled<NodeOnlyModules['utils']>('@png/node-utils'),
  };
}

/**
 * `import(specifier)` at run time, through a specifier bundlers do not resolve (webpack and Vite
 * are told to leave it by their comments; esbuild leaves any non-literal import): for packages
 * that only some platforms have, e.g. Dawn for Node. A browser app that wants one imports it itself.
 */
export function importUnbundled<T>(specifier: string): Promise<T> {
  return import(/* webpackIgnore: true */ /* @vite-ignore */ specifier);
}
