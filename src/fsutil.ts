/**
 * File helpers with the guarantees the engine relies on: streaming hashes,
 * durable writes (fsync of the file and its folder) and classification of
 * the errors an operator must hear about in plain words (disk full,
 * read-only, permission).
 */

import { createHash, type Hash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { statfsSync } from "node:fs";

export const IO_CHUNK = 1 << 20;

/** SHA-256 (hex) of a file, read once in 1 MiB pieces. */
export async function sha256File(
  path: string,
  onBytes?: (n: number) => void,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  const size = await readChunks(path, (chunk) => {
    hash.update(chunk);
    onBytes?.(chunk.length);
  });
  return { sha256: hash.digest("hex"), size };
}

/**
 * Read buffers handed back by finished reads. Allocating (and zeroing) a
 * fresh 1 MiB buffer per file dominated the copy of small images.
 */
const spareBuffers: Uint8Array[] = [];
const MAX_SPARE_BUFFERS = 16;

/**
 * Calls `fn` with each piece of the file in order; returns the byte count.
 * A piece is only valid during its call: the buffer is reused afterwards.
 */
export async function readChunks(
  path: string,
  fn: (chunk: Uint8Array) => void | Promise<void>,
): Promise<number> {
  using file = await Deno.open(path, { read: true });
  const buf = spareBuffers.pop() ?? new Uint8Array(IO_CHUNK);
  try {
    let total = 0;
    for (;;) {
      const n = await file.read(buf);
      if (n === null) break;
      total += n;
      await fn(buf.subarray(0, n));
    }
    return total;
  } finally {
    if (spareBuffers.length < MAX_SPARE_BUFFERS) spareBuffers.push(buf);
  }
}

/** Writes all of `data` to `file`. */
export async function writeAll(file: Deno.FsFile, data: Uint8Array) {
  let off = 0;
  while (off < data.length) off += await file.write(data.subarray(off));
}

/**
 * Writes a stream to `file` in writes of up to `IO_CHUNK` bytes, calling
 * `onPiece` with each piece as it arrives (to hash it). A network stream
 * delivers pieces of tens of KiB, and a write per piece costs a round trip
 * to the I/O threads each. Returns the number of bytes written.
 */
export async function writeStream(
  file: Deno.FsFile,
  stream: AsyncIterable<Uint8Array>,
  onPiece: (piece: Uint8Array) => void,
): Promise<number> {
  const buf = new Uint8Array(IO_CHUNK);
  let fill = 0;
  let total = 0;
  for await (const piece of stream) {
    onPiece(piece);
    total += piece.length;
    if (fill === 0 && piece.length >= buf.length) {
      await writeAll(file, piece);
      continue;
    }
    let off = 0;
    while (off < piece.length) {
      const n = Math.min(buf.length - fill, piece.length - off);
      buf.set(piece.subarray(off, off + n), fill);
      fill += n;
      off += n;
      if (fill === buf.length) {
        await writeAll(file, buf);
        fill = 0;
      }
    }
  }
  if (fill > 0) await writeAll(file, buf.subarray(0, fill));
  return total;
}

import { syncDir } from "./io/sync_dir.ts";
export { syncDir };

/**
 * `syncDir` off the main thread: the fsync runs on the I/O pool, so other
 * copies in flight go on meanwhile. Resolves once the folder is on disk.
 */
export async function syncDirAsync(path: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  let d: Deno.FsFile;
  try {
    d = await Deno.open(path, { read: true });
  } catch {
    return; // as syncDir: nothing to flush we could reach
  }
  try {
    await d.sync();
  } catch {
    // Some file systems refuse fsync on folders; the rename still happened.
  } finally {
    d.close();
  }
}

/** Free bytes for an unprivileged writer, or undefined when unknown. */
export function freeBytes(path: string): number | undefined {
  try {
    const s = statfsSync(path);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined;
  }
}

/** A short random suffix for temp files. */
export function randomSuffix(): string {
  return crypto.randomUUID().slice(0, 8);
}

export function isNotFound(err: unknown): boolean {
  return err instanceof Deno.errors.NotFound;
}

/** A plain-words reason for a file-system error, or undefined. */
export function fsProblem(err: unknown): string | undefined {
  const e = err as { code?: string; message?: string };
  const text = `${e?.code ?? ""} ${e?.message ?? ""}`;
  if (/ENOSPC|No space left/i.test(text)) return "the disk is full";
  if (/EROFS|Read-only file system/i.test(text)) {
    return "the file system is read-only";
  }
  if (
    err instanceof Deno.errors.PermissionDenied || /EACCES|EPERM/.test(text)
  ) {
    return "permission denied";
  }
  if (/EDQUOT|quota exceeded/i.test(text)) return "the disk quota is exceeded";
  return undefined;
}

export type { Hash };
export { createHash };

/**
 * Removes the temp files a killed process left beside `dest`: the names
 * `.<base name of dest><infix><suffix>` that `put` and `restore` write
 * before their rename. Only a holder of the run lock may call it, so no
 * other writer can own them. A file it cannot remove is left alone.
 */
export async function removeStaleTemps(
  dest: string,
  infix: string,
): Promise<void> {
  const prefix = `.${basename(dest)}${infix}`;
  try {
    for await (const e of Deno.readDir(dirname(dest))) {
      if (e.isFile && e.name.startsWith(prefix)) {
        await Deno.remove(join(dirname(dest), e.name)).catch(() => {});
      }
    }
  } catch {
    // No folder yet: nothing was left behind.
  }
}
