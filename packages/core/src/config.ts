/** A config value that is not what a module can be built from. Thrown before any weight is allocated. */
export class ConfigError extends Error {
  constructor(
    readonly configName: string,
    readonly field: string,
    expected: string,
    got: unknown,
  ) {
    super(`Error in ${configName}.${field}: expected ${expected}, got ${formatValue(got)}`);
    this.name = 'ConfigError';
  }
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Parses `text` (the contents of `file`, named in errors) as JSON that must be an object. */
export function parseJsonObject(text: string, file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${file}: expected a JSON object`);
  return parsed as Record<string, unknown>;
}

/** Throws `Error in <configName>.<field>: expected <expected>, got <value>` unless `ok`. */
export function check(ok: boolean, configName: string, field: string, expected: string, got: unknown): void {
  if (!ok) throw new ConfigError(configName, field, expected, got);
}

export const isPositiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
export const isNonNegativeInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
export const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Merges `user` over `defaults`, rejects unknown keys (with a did-you-mean), runs `validate` and
 * freezes the result. For the project's own configs; diffusers configs carry extra keys and use
 * their own readers.
 */
export function resolveConfig<T extends object>(
  configName: string,
  defaults: T,
  user: Partial<T> | Record<string, unknown> = {},
  validate: (config: T) => void = () => {},
): Readonly<T> {
  const known = Object.keys(defaults);
  for (const key of Object.keys(user)) {
    if (key.startsWith('_')) continue; // diffusers-style metadata such as _class_name
    if (!known.includes(key)) {
      const near = known.find((k) => editDistance(k, key) <= 2);
      throw new ConfigError(configName, key, near ? `a known field (did you mean '${near}'?)` : `one of ${known.join(', ')}`, 'an unknown field');
    }
  }
  const config = { ...defaults, ...(user as Partial<T>) } as T;
  for (const key of known) {
    const d = (defaults as Record<string, unknown>)[key];
    const v = (config as Record<string, unknown>)[key];
    if (d !== null && d !== undefined && v !== null && typeof d !== typeof v) {
      throw new ConfigError(configName, key, `a ${typeof d}`, v);
    }
  }
  validate(config);
  return Object.freeze(config);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}
