/**
 * BENCHMARKS.md from the stored results of every benchmark: the machine,
 * how to reproduce, a table per benchmark and what limits each figure.
 */

import type { Mode } from "./lib.ts";
import { type IdleResult, renderNothingToDo } from "./nothing_to_do.ts";
import { type OffloadResult, renderOffload } from "./offload.ts";
import { type BaiduResult, renderBaidu } from "./baidu.ts";
import { type HashResult, renderHashing } from "./hashing.ts";

export interface Stored {
  machine?: string;
  idle?: IdleResult & { load?: string };
  db?: { mode: Mode; date: string; markdown: string };
  offload?: OffloadResult & { load?: string };
  baidu?: BaiduResult & { load?: string };
  hash?: HashResult & { load?: string };
}

function loadNote(load: string | undefined): string {
  return load ? `Load average (1, 5, 15 min) before → after: ${load}.` : "";
}

export function render(s: Stored): string {
  const sections = [
    "# Benchmarks",
    "",
    "image-agent measured side by side with the tools an operator would use instead, on the same generated data in the same run. Benchmarks are not tests: `deno task test` asserts no time. Figures are medians of several runs; the mode (quick or full) that produced each table is stated above it.",
    "",
    "## Reproduce",
    "",
    "```sh",
    "sudo apt-get update && sudo apt-get install -y $(grep -v '^#' scripts/bench/apt-packages.txt)",
    "deno task bench            # quick mode, a few minutes",
    "deno task bench --full     # the sizes of the issue",
    "deno task bench --only offload --small 20000x256 --large 200x50 --runs 5",
    "deno task bench --help     # every size and knob",
    "```",
    "",
    "Data is generated under `./bench-data/` (git-ignored) and the backup target is `/dev/shm/image-agent-bench` (tmpfs, another file system than the data); both are removed or reused by the next run. image-agent runs from source (`deno run --allow-all main.ts ...`), as a subprocess, exactly as an operator would call it. Wall time is measured around each process; peak memory is GNU time's `%M` (largest resident set of the process tree's members).",
    "",
    "## Machine",
    "",
    s.machine ?? "",
    "",
    "The machine is a shared 2-vCPU virtual machine; other jobs ran beside the benchmarks, so each table gives the load average around it, and single figures move by 10–30% from run to run.",
    "",
    renderNothingToDo(s.idle, s.db?.markdown),
    loadNote(s.idle?.load),
    "",
    renderOffload(s.offload),
    loadNote(s.offload?.load),
    "",
    OFFLOAD_READING,
    "",
    renderBaidu(s.baidu),
    loadNote(s.baidu?.load),
    "",
    BAIDU_READING,
    "",
    renderHashing(s.hash),
    loadNote(s.hash?.load),
    "",
    HASH_READING,
    "",
  ];
  return sections.join("\n").replace(/\n{3,}/g, "\n\n");
}

const OFFLOAD_READING =
  `**What limits it.** For rclone and rsync, one read of each file, one write, and for rsync \`--checksum\` a second read on the sending side; rsync runs as three processes (its peak RSS is the largest of them). image-agent does more per file, by design: it hashes while it copies, fsyncs the copy, reads the copy back and hashes it again before the rename, fsyncs the target folder, commits every step (planned, completed, deleted, cleared) to the ledger (WAL, \`synchronous=FULL\`: an fsync per committed batch) and clears the image column in the shop database (another fsync per batch), and fsyncs each source folder after deleting. With 256 KiB images the per-file cost dominates: about fifteen file-system calls per image, each a round trip from the JavaScript thread to Deno's I/O threads, on two vCPUs shared with the I/O threads and with other jobs. With 50 MiB images the bytes dominate: two SHA-256 passes (copy and read-back) and the extra read of the copy. Profiling (V8 CPU profile of a 2,000-image run) led to the changes of this round: ledger statements prepared once instead of per call, read buffers reused instead of a zeroed 1 MiB per read, images up to 4 MiB read and read back in one call each, folder fsyncs moved off the main thread, and paths resolved and files deleted a few at a time; together they took the 2,000 × 256 KiB run from about 10–11 s to the figure above.`;

const BAIDU_READING =
  `**What limits it.** On loopback neither side waits for a network: both are bound by the fake server (same Deno process as the benchmark driver, parsing every multipart body and hashing every part) and by CPU on two vCPUs. curl gets its parts and their MD5s prepared before the clock starts and only sends bytes; image-agent reads every file once to build the digest (SHA-256, MD5, slice MD5, block list), reads it again part by part to send, verifies the block list and metadata the server answers, and keeps the ledger; on restore it streams the download to a temp file while hashing, checks the SHA-256 against the ledger, fsyncs and renames, and puts the image column back. Its process start (\`deno run\`, ~0.15 s) counts in every figure. Memory: image-agent holds one part buffer per worker (3 × 4 MiB) plus the runtime; it does not grow with the file size (compare the 100 MiB and 1 GiB rows).`;

const HASH_READING =
  `**What limits it.** All of them are CPU-bound on a warm page cache, and the hash code decides. image-agent hashes with Deno's node:crypto (Rust hash implementations built into the deno binary) over 1 MiB reads; its SHA-256 uses the CPU's SHA extensions, which \`sha256sum\` of coreutils 9.1 as Debian builds it does not, hence image-agent's lead there. MD5 has no such instructions: both sides run scalar MD5 code and the difference is the implementation's speed plus, for image-agent, one hash object per 4 MiB block and the copy of each 1 MiB read into JavaScript (small). The one-read Baidu digest computes three hashes of every byte (SHA-256, MD5 and the block MD5), so its time is about the sum of the three; it still beats running \`md5sum\` and \`sha256sum\` one after the other. On this shared machine the MD5 figures move by ±20% between runs (a standalone measurement earlier the same day gave 3.1 s for the block list against 3.0 s for \`md5sum\`).`;
