// Node's `fs`, plus the `globSync` of Node 22 (from the `glob` package).
import fs from 'node:fs';
import { globSync as glob } from 'glob';

export * from 'node:fs';
export default fs;
export function globSync(pattern, options) {
  return glob(pattern, options);
}
