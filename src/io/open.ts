/**
 * Opens any supported checkpoint, telling the format from the content (magic bytes
 * and headers), never from the file name.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import type { Checkpoint } from './checkpoint.ts';
import { FileSource } from './file.ts';
import { isGguf, openGguf } from './gguf.ts';
import { isPth, openPth } from './pth.ts';
import { isRwkvCpp, openRwkvCpp } from './rwkvcpp.ts';
import { openSafetensors } from './safetensors.ts';

/** A safetensors file starts with a u64 header length and then `{`. */
function isSafetensors(head: Buffer): boolean {
  if (head.length < 9) return false;
  const n = head.readBigUInt64LE(0);
  return n > 1n && n < 1n << 40n && head[8] === 0x7b;
}

export function openCheckpoint(path: string): Checkpoint {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    throw new UserError(`${path}: no such file or directory`, 'Check the model path.');
  }
  if (st.isDirectory()) {
    const names = readdirSync(path);
    if (names.some((n) => n.endsWith('.safetensors') || n === 'model.safetensors.index.json')) {
      return openSafetensors(path);
    }
    const pth = names.filter((n) => n.endsWith('.pth') || n.endsWith('.bin'));
    throw new UserError(
      `${path} is a directory without safetensors files`,
      pth.length
        ? `Name the checkpoint file itself, e.g. ${join(path, pth[0])}.`
        : 'Name a checkpoint file.',
    );
  }
  if (path.endsWith('.index.json')) return openSafetensors(path);
  const f = new FileSource(path);
  let head: Buffer;
  try {
    head = f.read(0, Math.min(64, f.size), 'file header');
  } finally {
    f.close();
  }
  if (isRwkvCpp(head)) return openRwkvCpp(path);
  if (isGguf(head)) return openGguf(path);
  if (isPth(head)) return openPth(path);
  if (isSafetensors(head)) return openSafetensors(path);
  throw new UserError(
    `${path}: not a checkpoint format actsparse knows (first bytes ${head.subarray(0, 8).toString('hex')})`,
    'Supported: PyTorch .pth / pytorch_model.bin (zip), Hugging Face safetensors, rwkv.cpp .bin, GGUF.',
  );
}
