/** The tool's name and version, from package.json (the same relative path from src/ and dist/). */
import { readFileSync } from 'node:fs';

export function toolVersion(): { name: string; version: string } {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  return { name: pkg.name, version: pkg.version };
}
