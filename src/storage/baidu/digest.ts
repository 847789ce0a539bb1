/**
 * Everything an upload needs to know about a file, from one streaming read:
 * the SHA-256 the engine keeps, the whole-file MD5 (`content-md5`), the MD5
 * of the first 256 KiB (`slice-md5`) and the MD5 of every chunk
 * (`block_list`). Memory stays at one 1 MiB read buffer whatever the size.
 *
 * Also the limits that depend on the member level (`vip_type`): chunk size
 * and largest single file.
 */

import { createHash, type Hash, readChunks } from "../../fsutil.ts";

export const MIB = 1 << 20;
export const GIB = 1 << 30;
export const SLICE_MD5_BYTES = 256 * 1024;
/** Baidu documents at most 1024 chunks per file. */
export const MAX_PARTS = 1024;

export interface FileDigest {
  size: number;
  mtimeMs: number;
  sha256: string;
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

/** Reads the file once and hashes it every way an upload needs. */
export async function digestFile(
  path: string,
  chunkSize: number,
  signal?: AbortSignal,
): Promise<FileDigest> {
  const before = await Deno.stat(path);
  const sha256 = createHash("sha256");
  const md5 = createHash("md5");
  const slice = createHash("md5");
  const blockList: string[] = [];
  let block: Hash = createHash("md5");
  let inBlock = 0;
  let total = 0;
  const size = await readChunks(path, (piece) => {
    signal?.throwIfAborted();
    sha256.update(piece);
    md5.update(piece);
    if (total < SLICE_MD5_BYTES) {
      slice.update(piece.subarray(0, SLICE_MD5_BYTES - total));
    }
    total += piece.length;
    let off = 0;
    while (off < piece.length) {
      const take = Math.min(chunkSize - inBlock, piece.length - off);
      block.update(piece.subarray(off, off + take));
      inBlock += take;
      off += take;
      if (inBlock === chunkSize) {
        blockList.push(block.digest("hex"));
        block = createHash("md5");
        inBlock = 0;
      }
    }
  });
  if (inBlock > 0 || blockList.length === 0) {
    blockList.push(block.digest("hex"));
  }
  return {
    size,
    mtimeMs: before.mtime?.getTime() ?? 0,
    sha256: sha256.digest("hex"),
    md5: md5.digest("hex"),
    sliceMd5: slice.digest("hex"),
    chunkSize,
    blockList,
  };
}

/** MD5 (hex) of some bytes. */
export function md5Hex(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}
