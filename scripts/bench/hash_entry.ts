/**
 * Hashes one file the way image-agent does, for the hashing benchmark:
 *
 *   sha256      `sha256File` from src/fsutil.ts (local copies, the ledger)
 *   md5-blocks  the MD5 of every 4 MiB block, as the Baidu block list is
 *               built in src/storage/baidu/digest.ts, over `readChunks`
 *   digest      `digestFile` itself: SHA-256, whole-file MD5, slice MD5 and
 *               the block list in one read (what a Baidu upload pays)
 *
 * Prints one JSON line: the hashing time inside the process (process start
 * excluded) and the result, so it can be checked against md5sum/sha256sum.
 *
 *   deno run --allow-read scripts/bench/hash_entry.ts sha256 FILE
 */

import { createHash, readChunks, sha256File } from "../../src/fsutil.ts";
import { digestFile } from "../../src/storage/baidu/digest.ts";

const BLOCK = 4 * 1024 * 1024;

async function md5Blocks(path: string): Promise<string[]> {
  const list: string[] = [];
  let block = createHash("md5");
  let inBlock = 0;
  await readChunks(path, (piece) => {
    let off = 0;
    while (off < piece.length) {
      const take = Math.min(BLOCK - inBlock, piece.length - off);
      block.update(piece.subarray(off, off + take));
      inBlock += take;
      off += take;
      if (inBlock === BLOCK) {
        list.push(block.digest("hex"));
        block = createHash("md5");
        inBlock = 0;
      }
    }
  });
  if (inBlock > 0 || list.length === 0) list.push(block.digest("hex"));
  return list;
}

const [mode, path] = Deno.args;
const start = performance.now();
let result: unknown;
if (mode === "sha256") {
  result = (await sha256File(path)).sha256;
} else if (mode === "md5-blocks") {
  const list = await md5Blocks(path);
  result = { blocks: list.length, first: list[0] };
} else if (mode === "digest") {
  const d = await digestFile(path, BLOCK);
  result = { sha256: d.sha256, md5: d.md5, blocks: d.blockList.length };
} else {
  console.error("usage: hash_entry.ts sha256|md5-blocks|digest FILE");
  Deno.exit(2);
}
const seconds = (performance.now() - start) / 1000;
console.log(JSON.stringify({ mode, seconds, result }));
