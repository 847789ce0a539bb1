/**
 * Hashes one file the way image-agent does, for the hashing benchmark:
 *
 *   sha256      the SHA-256 job of the I/O workers (src/io/jobs.ts), as the
 *               Baidu upload computes it for the ledger
 *   md5-blocks  `md5BlockList` from src/storage/baidu/digest.ts: the MD5 of
 *               every 4 MiB block, in ranges on the I/O workers
 *   digest      `digestFile` itself plus the SHA-256: everything a Baidu
 *               upload hashes before and while it sends
 *
 * Prints one JSON line: the hashing time inside the process (process start
 * excluded) and the result, so it can be checked against md5sum/sha256sum.
 *
 *   deno run --allow-read scripts/bench/hash_entry.ts sha256 FILE
 */

import { IoPool } from "../../src/io/pool.ts";
import { digestFile, md5BlockList } from "../../src/storage/baidu/digest.ts";

const BLOCK = 4 * 1024 * 1024;

const [mode, path, workers] = Deno.args;
// As many workers as an agent with the default backup.concurrency starts.
const io = new IoPool({ workers: Number(workers ?? 4) });
const sha256 = () =>
  io.run({ kind: "hash", path, offset: 0, length: -1, sha256: true });
const start = performance.now();
let result: unknown;
if (mode === "sha256") {
  result = (await sha256()).sha256;
} else if (mode === "md5-blocks") {
  const size = (await Deno.stat(path)).size;
  const list = await md5BlockList(path, BLOCK, size, io);
  result = { blocks: list.length, first: list[0] };
} else if (mode === "digest") {
  const [d, s] = await Promise.all([digestFile(path, BLOCK, io), sha256()]);
  result = { sha256: s.sha256, md5: d.md5, blocks: d.blockList.length };
} else {
  console.error("usage: hash_entry.ts sha256|md5-blocks|digest FILE [WORKERS]");
  Deno.exit(2);
}
const seconds = (performance.now() - start) / 1000;
await io.close();
console.log(JSON.stringify({ mode, seconds, result }));
