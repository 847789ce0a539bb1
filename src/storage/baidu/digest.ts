/**
 * What precreate needs to know about a file: the MD5 of every chunk
 * (`block_list`), the whole-file MD5 (`content-md5`) and the MD5 of the
 * first 256 KiB (`slice-md5`), computed on the I/O workers: the whole-file
 * MD5 on one, the block list cut into ranges on the others, so a large
 * image is hashed on every core instead of one. Memory stays at one read
 * buffer per worker whatever the size.
 *
 * Also the limits that depend on the member level (`vip_type`): chunk size
 * and largest single file.
 */

import { StorageError } from "../../errors.ts";
import type { IoPool } from "../../io/pool.ts";

export const MIB = 1 << 20;
export const GIB = 1 << 30;
export const SLICE_MD5_BYTES = 256 * 1024;
/** Baidu documents at most 1024 chunks per file. */
export const MAX_PARTS = 1024;

export interface FileDigest {
  size: number;
  mtimeMs: number;
  md5: string;
  sliceMd5: string;
  chunkSize: number;
  blockList: string[];
}

/** Largest chunk each member level may send: ordinary, VIP, SVIP. */
export function maxChunkSize(vipType: number): number {
  return vipType >= 2 ? 32 * MIB : vipType === 1 ? 16 * MIB : 4 * MIB;
}

/** Largest single file each member level may store. */
export function maxFileSize(vipType: number): number {
  return vipType >= 2 ? 20 * GIB : vipType === 1 ? 10 * GIB : 4 * GIB;
}

export function vipName(vipType: number): string {
  return vipType >= 2 ? "SVIP" : vipType === 1 ? "VIP" : "ordinary";
}

/**
 * The chunk size for a file: exactly 4 MiB for ordinary accounts; for VIPs
 * the smallest whole MiB of at least 4 that keeps the file within 1024
 * chunks (small chunks keep memory low and each request short), or the
 * configured size, both capped by the member level.
 */
export function chunkSizeFor(
  size: number,
  vipType: number,
  preferredMiB = 0,
): number {
  const cap = maxChunkSize(vipType);
  if (vipType <= 0) return 4 * MIB;
  const needed = Math.ceil(size / MAX_PARTS / MIB) * MIB;
  const wanted = preferredMiB > 0 ? preferredMiB * MIB : 4 * MIB;
  return Math.min(cap, Math.max(4 * MIB, wanted, needed));
}

/** The hashes precreate needs, on the pool's workers. */
export async function digestFile(
  path: string,
  chunkSize: number,
  io: IoPool,
): Promise<FileDigest> {
  const before = await Deno.stat(path);
  const blocks = Math.max(1, Math.ceil(before.size / chunkSize));
  const whole = io.run({
    kind: "hash",
    path,
    offset: 0,
    length: -1,
    md5: true,
    sliceBytes: SLICE_MD5_BYTES,
    blockBytes: blocks <= 2 ? chunkSize : undefined,
  });
  const blockList = blocks <= 2
    ? whole.then((r) => r.blocks!)
    : md5BlockList(path, chunkSize, before.size, io, io.size - 1);
  const [w, list] = await Promise.all([whole, blockList]);
  if (w.size !== before.size || list.length !== blocks) {
    throw new StorageError(
      `The image "${path}" changed while it was being hashed; it will be tried again`,
      "retry",
    );
  }
  return {
    size: w.size,
    mtimeMs: before.mtime?.getTime() ?? 0,
    md5: w.md5!,
    sliceMd5: w.sliceMd5!,
    chunkSize,
    blockList: list,
  };
}

/**
 * The MD5 of every `chunkSize` block of the first `size` bytes, the blocks
 * cut into `ranges` runs hashed on as many workers at once.
 */
export async function md5BlockList(
  path: string,
  chunkSize: number,
  size: number,
  io: IoPool,
  ranges = io.size,
): Promise<string[]> {
  const blocks = Math.max(1, Math.ceil(size / chunkSize));
  const n = Math.max(1, Math.min(ranges, blocks));
  const per = Math.ceil(blocks / n);
  const jobs: Promise<string[]>[] = [];
  for (let first = 0; first < blocks; first += per) {
    const count = Math.min(per, blocks - first);
    const offset = first * chunkSize;
    jobs.push(
      io.run({
        kind: "hash",
        path,
        offset,
        length: Math.min(count * chunkSize, size - offset),
        blockBytes: chunkSize,
      }).then((r) => r.blocks!),
    );
  }
  return (await Promise.all(jobs)).flat();
}
