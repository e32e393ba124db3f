import { readFileSync } from 'node:fs';

/** Reads and parses a JSON file; the error names the file and says what to check. */
export function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${what} at ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} at ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** An error for one bad field: `<where>, field <field>: expected <expected>, got <value>`. */
export function fieldError(where: string, field: string, expected: string, value: unknown): Error {
  return new Error(`${where}, field ${field}: expected ${expected}, got ${describeValue(value)}`);
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** True for a plain JSON object (not an array, not null). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
