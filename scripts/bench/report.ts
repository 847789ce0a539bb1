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

/** One line per target: met or missed, with the figure and the mode. */
function summary(s: Stored): string {
  const out = [
    "## Targets at a glance",
    "",
    "| benchmark | target | result | mode |",
    "|---|---|---|---|",
  ];
  const yes = (ok: boolean) => (ok ? "met" : "**missed**");
  if (s.idle) {
    const worst = Math.max(
      ...s.idle.rows.map((r) => r.run.seconds - r.help.seconds),
    );
    out.push(
      `| 1. nothing to do, ${
        s.idle.rows.map((r) => r.orders.toLocaleString("en-US")).join(" / ")
      } orders | well under 1 s beyond process start, flat | ${
        yes(worst < 1)
      }: at most ${(worst * 1000).toFixed(0)} ms | ${s.idle.mode} |`,
    );
  }
  if (s.offload) {
    for (const set of s.offload.sets) {
      const a = set.tools["image-agent"];
      const r = set.tools["rclone"];
      if (!a || !r) continue;
      const x = r.seconds / a.seconds;
      out.push(
        `| 2. offload ${set.set.files.toLocaleString("en-US")} × ${
          set.set.size >= 1 << 20
            ? `${set.set.size / (1 << 20)} MiB`
            : `${set.set.size / 1024} KiB`
        } | at least as fast as rclone | ${yes(x >= 1)}: ${
          x.toFixed(2)
        }× rclone's speed | ${s.offload.mode} |`,
      );
    }
  }
  if (s.baidu) {
    for (const set of s.baidu.sets) {
      for (const dir of ["upload", "restore"] as const) {
        const x = set[dir].curl.seconds / set[dir].agent.seconds;
        const rss = set[dir].agent.peakRss / (1 << 20);
        out.push(
          `| 3. Baidu ${dir} ${set.set.files} × ${
            set.set.size / (1 << 20)
          } MiB | ≥ 80% of curl; RSS < 150 MiB | ${yes(x >= 0.8)}: ${
            (x * 100).toFixed(0)
          }% of curl; ${yes(rss < 150)}: ${
            rss.toFixed(0)
          } MiB | ${s.baidu.mode} |`,
        );
      }
    }
  }
  if (s.hash) {
    for (const row of s.hash.rows) {
      if (row.informational) continue;
      const x = row.peerProcess.seconds / row.agentInside.seconds;
      out.push(
        `| 4. ${row.what} | within 10% of \`${row.peer}\` | ${yes(x >= 0.9)}: ${
          x.toFixed(2)
        }× its speed | ${s.hash.mode} |`,
      );
    }
  }
  return out.join("\n");
}

export function render(s: Stored): string {
  const sections = [
    "# Benchmarks",
    "",
    "image-agent measured side by side with the tools an operator would use instead, on the same generated data in the same run. Benchmarks are not tests: `deno task test` asserts no time. Figures are medians of several runs; the mode (quick or full) that produced each table is stated above it.",
    "",
    summary(s),
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
    (s.machine ?? "").replace(
      "- image-agent: commit",
      "- image-agent: at the start of the last `deno task bench`, commit",
    ),
    "",
    "Each table gives its date; the commits between them are in `git log`.",
    "",
    "The machine is a shared 2-vCPU virtual machine; other jobs ran beside the benchmarks, so each table gives the load average around it, and single figures move by 10–30% from run to run.",
    "",
    renderNothingToDo(
      s.idle,
      s.db ? `${s.db.markdown}\n\n${DB_READING}` : undefined,
      loadNote(s.idle?.load),
    ),
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
  `**What limits it.** rclone and rsync read each file once and write it once (rsync's \`--checksum\` reads the source a second time, while building its file list), and neither flushes what it writes to disk. image-agent does more for each image, by design: it hashes while it copies, fsyncs the copy, reads the copy back and hashes it again, puts it in place with a hard link (which cannot replace another file), fsyncs the order's folder and, for a new folder, its parent; then it records every step (planned, completed, deleted, cleared) in the ledger (WAL, \`synchronous=FULL\`), renames each source aside, checks it is still the file it backed up, unlinks it, and clears the image column in the shop database. Since commit 3121df0 the file work of each image runs as synchronous calls on worker threads (\`backup.concurrency\` of them), and the JavaScript thread keeps only the ledger and the shop database.

- **Large images (50 MiB): bytes.** Two SHA-256 passes and one extra read per image, now spread over the workers and both vCPUs instead of one thread; image-agent is ahead of rclone here (its hashes use the CPU's SHA extensions, see benchmark 4).
- **Small images (256 KiB): work per image, on two vCPUs.** Per image there are about 25 system calls on a worker (three of them fsyncs), two SHA-256 passes of 256 KiB, a message to the worker and back for the copy and another for the deletion, and about fifteen SQLite statements on the JavaScript thread (ledger and shop). Timed by phase on 20,000 images (in a run beside other jobs): copying and verifying about 75% of the pass, deleting and clearing about 18%, planning about 5%, with about as much system time as user time; the full run above did about 1,050 images a second. The 2,000-image quick run took 5.7 s on 2026-12-03 (commit 4047d8d, file work on the JavaScript thread); with the workers it took 1.6–1.9 s in this round's runs. What is left is the fixed cost per image: fewer fsyncs (a folder fsync per batch instead of per image) and fewer messages (deletions sent to the workers in groups) are the next steps; both keep every step as it is.
- **The shared-file checks before each deletion** (other orders naming the same file, in the same words through an index on the image column, in other words through one index of every image's device and inode built per pass) cost a lookup each.
- **Peak memory** is the runtime, one isolate per worker (about 15 MiB each) and SQLite's caches; it grows with the number of images in a run (about 160 MiB at 2,000, 360 MiB at 20,000 with \`cleanup.batchSize = 500\`) while the JavaScript heap stays near 40 MiB, so the growth is native memory (per-thread allocator arenas are the suspect). Not investigated further.`;

const BAIDU_READING =
  `**What limits it.** On loopback nobody waits for a network; the fake server (a separate Deno process from both clients, parsing every multipart body and hashing every part it receives) and the 2 vCPUs set the pace, and they are the same for both clients. curl gets its parts cut and their MD5s computed before the clock starts, and only sends bytes. image-agent's figures include everything an upload really costs:

- **Upload.** Before the first byte is sent, the block list and the whole-file MD5 are computed side by side on the I/O workers (the block list cut into ranges, see benchmark 4); the SHA-256 the ledger keeps runs on a worker while the parts are sent. Each part is read from the file again and sent by 3 part workers from two reused 256 KiB pieces, and the MD5 the server answers must equal the block list; then the block list and metadata of \`create\` are checked, the ledger is committed, and the file deleted and its column cleared.
- **Restore.** One order after another: the dlink is fetched, the download is hashed while it is written to a temp file in 1 MiB writes, fsynced, checked against the ledger and renamed into place.
- **Memory.** A 1 GiB upload through \`BaiduStorage.put\` alone peaked at about 190 MiB before two changes: each 256 KiB read of a part went into a fresh buffer that lived until the garbage collector came by (about 70 MiB with three parts in flight), and four hash workers cost about 15 MiB each. Parts now take turns between two pieces, and the Baidu target starts no more hash workers than there are cores.`;

const HASH_READING =
  `**What limits it.** All of them are CPU-bound on a warm page cache, and the hash code decides. image-agent hashes with Deno's node:crypto (Rust hash implementations built into the deno binary) in 4 MiB reads on its I/O worker threads. Its SHA-256 uses the CPU's SHA extensions, which \`sha256sum\` of coreutils 9.1 as Debian builds it does not: hence a lead of about 4×, on one thread. MD5 has no such instructions: on one worker image-agent's MD5 is a little slower than \`md5sum\` (the row "on one worker"; node:crypto's MD5 is the limit). The Baidu block list is the MD5 of each 4 MiB block on its own, so image-agent cuts it into ranges hashed on as many workers at once, which is what a Baidu upload does; \`md5sum\` has one thread. A Baidu upload also needs the whole-file MD5 (\`content-md5\`), which cannot be split, and the SHA-256; the last row is all three, side by side.`;

const DB_READING =
  `**Reading.** The eligibility query stays flat on all three servers from 10,000 to 1,000,000 orders: a fraction of a millisecond on SQLite, a millisecond or two on PostgreSQL and a few on MariaDB. On MariaDB a plain \`ORDER BY key LIMIT n\` made the optimizer walk the primary key through every order (440 ms at a million in an earlier run); the query sorts on an expression first, so the eligibility index finds the few orders that still have an image. The first \`migrate\` is the slow step on the servers, mostly the backfill and the index build. In the run that has work the shop database is one part of the cost per order, beside the copy and the ledger.`;
