import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { FormatError, UserError } from '../errors.ts';

/**
 * A file read lazily by offset. Checkpoints can be far larger than one Node Buffer
 * (4 GiB), so readers keep offsets and read each tensor when it is asked for.
 */
export class FileSource {
  readonly size: number;
  private fd: number;

  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new UserError(`${path}: no such file`, 'Check the path.');
      if (code === 'EISDIR') throw new UserError(`${path} is a directory`, 'Name a file.');
      throw new UserError(`${path}: cannot open (${code ?? String(e)})`, 'Check permissions.');
    }
    const st = fstatSync(this.fd);
    if (st.isDirectory()) {
      closeSync(this.fd);
      throw new UserError(`${path} is a directory`, 'Name a file inside it.');
    }
    this.size = st.size;
  }

  /** Reads exactly `length` bytes at `offset`; a range past the end is a FormatError. */
  read(offset: number, length: number, what = 'data'): Buffer {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0
    ) {
      throw new FormatError(
        this.path,
        `${what}: invalid range (offset ${offset}, ${length} bytes)`,
      );
    }
    if (offset + length > this.size) {
      throw new FormatError(
        this.path,
        `${what} needs bytes ${offset}..${offset + length} but the file has ${this.size} (truncated?)`,
      );
    }
    if (length > 0x7fffffff) {
      throw new FormatError(
        this.path,
        `${what}: one read of ${length} bytes is more than Node allows`,
      );
    }
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, length - done, offset + done);
      if (n === 0) throw new FormatError(this.path, `${what}: unexpected end of file`);
      done += n;
    }
    return buf;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
