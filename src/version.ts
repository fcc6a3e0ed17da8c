/** The tool's name and version, from package.json (one folder up from src/ and from dist/). */
import { readJsonFile } from './util/files.ts';

export function toolVersion(): { name: string; version: string } {
  const pkg = readJsonFile(new URL('../package.json', import.meta.url), 'package.json') as {
    name: string;
    version: string;
  };
  return { name: pkg.name, version: pkg.version };
}
