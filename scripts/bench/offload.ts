/**
 * Benchmark 2: offloading images to a folder on another file system, by
 * image-agent (`run`: copy, hash while copying, fsync, read back and hash,
 * ledger, delete, clear the column) and by `rclone move --checksum` and
 * `rsync -a --remove-source-files --checksum` over the same files.
 *
 * The files are generated once per set under bench-data/offload/<set>/master.
 * Before every timed run the tool gets its own tree of hard links to them
 * (so each tool deletes its own names, reads the same bytes from the same
 * warm page cache, and no writeback of a fresh copy competes with the run),
 * an empty target folder on the tmpfs (/dev/shm) and, for image-agent, a
 * freshly generated shop and ledger. The tools take turns, run after run.
 */

import { join } from "node:path";
import {
  agent,
  Bytes,
  exists,
  fmtCount,
  fmtMiB,
  fmtRatio,
  fmtSeconds,
  fmtSize,
  mbPerSec,
  type Mode,
  note,
  removeTree,
  type Sample,
  settle,
  sh,
  summarize,
  type Summary,
  timed,
} from "./lib.ts";
import { buildOffloadShop, offloadImage, writeConfig } from "./shop.ts";

export const TOOLS = ["image-agent", "rclone", "rsync"] as const;
export type Tool = typeof TOOLS[number];

export interface FileSet {
  name: string;
  files: number;
  size: number;
}

export interface OffloadSetResult {
  set: FileSet;
  tools: Record<Tool, Summary>;
}

export interface OffloadResult {
  mode: Mode;
  date: string;
  runs: number;
  target: string;
  concurrency: number;
  batchSize: number;
  sets: OffloadSetResult[];
}

async function generate(dir: string, set: FileSet): Promise<void> {
  const marker = join(dir, ".complete");
  const want = `${set.files} ${set.size}\n`;
  if (
    await exists(marker) && (await Deno.readTextFile(marker)) === want
  ) return;
  await removeTree(dir);
  note(
    `offload: generating ${fmtCount(set.files)} files of ${fmtSize(set.size)}`,
  );
  const bytes = new Bytes();
  for (let d = 0; d < 100; d++) {
    await Deno.mkdir(join(dir, `d${String(d).padStart(2, "0")}`), {
      recursive: true,
    });
  }
  for (let i = 1; i <= set.files; i++) {
    await bytes.write(join(dir, offloadImage(i)), set.size, i);
  }
  await settle();
  await Deno.writeTextFile(marker, want);
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) n += await countFiles(join(dir, e.name));
    else if (e.isFile && !e.name.startsWith(".")) n++;
  }
  return n;
}

/** One timed offload by one tool over a fresh tree of links. */
async function once(
  tool: Tool,
  master: string,
  work: string,
  target: string,
  set: FileSet,
  knobs: { concurrency: number; batchSize: number },
): Promise<Sample> {
  await removeTree(work);
  await removeTree(target);
  await Deno.mkdir(work, { recursive: true });
  await Deno.mkdir(target, { recursive: true });
  const src = join(work, "hd_images");
  await sh(["cp", "-al", master, src]);
  await Deno.remove(join(src, ".complete"));
  let sample: Sample;
  if (tool === "image-agent") {
    const db = join(work, "shop.db");
    buildOffloadShop(db, set.files);
    const config = await writeConfig({
      dir: work,
      db,
      imagesRoot: src,
      backupDir: target,
      stateDir: join(work, "state"),
      concurrency: knobs.concurrency,
      batchSize: knobs.batchSize,
    });
    await sh(agent("migrate", "-c", config, "--quiet"));
    await settle();
    sample = await timed(agent("run", "-c", config, "--json", "--quiet"), {
      keepStdout: true,
    });
    const s = JSON.parse(sample.stdout);
    if (s.backedUp !== set.files || s.cleaned !== set.files || s.failed) {
      throw new Error(`image-agent run: ${sample.stdout}`);
    }
  } else {
    await settle();
    const cmd = tool === "rclone"
      ? ["rclone", "move", "--checksum", "--config", "/dev/null", src, target]
      : [
        "rsync",
        "-a",
        "--remove-source-files",
        "--checksum",
        `${src}/`,
        `${target}/`,
      ];
    sample = await timed(cmd);
  }
  const left = await countFiles(src);
  const copied = await countFiles(target);
  if (left !== 0 || copied !== set.files) {
    throw new Error(
      `${tool}: ${left} files left in the source, ${copied} of ${set.files} in the target`,
    );
  }
  await removeTree(target);
  await removeTree(work);
  return sample;
}

export async function benchOffload(
  dataDir: string,
  targetRoot: string,
  sets: FileSet[],
  runs: number,
  mode: Mode,
  knobs: { concurrency: number; batchSize: number },
  tools: readonly Tool[] = TOOLS,
): Promise<OffloadResult> {
  const out: OffloadSetResult[] = [];
  for (const set of sets) {
    const master = join(dataDir, "offload", set.name, "master");
    await generate(master, set);
    const samples = Object.fromEntries(
      tools.map((t) => [t, [] as Sample[]]),
    ) as Record<Tool, Sample[]>;
    for (let r = 0; r < runs; r++) {
      for (const tool of tools) {
        note(
          `offload ${set.name}: ${tool}, run ${r + 1} of ${runs}`,
        );
        const s = await once(
          tool,
          master,
          join(dataDir, "offload", set.name, `work-${tool}`),
          join(targetRoot, set.name, tool),
          set,
          knobs,
        );
        note(
          `  ${fmtSeconds(s.seconds)}, ${
            mbPerSec(set.files * set.size, s.seconds).toFixed(0)
          } MB/s, ${fmtMiB(s.peakRss)}`,
        );
        samples[tool].push(s);
      }
    }
    out.push({
      set,
      tools: Object.fromEntries(
        tools.map((t) => [t, summarize(samples[t])]),
      ) as Record<Tool, Summary>,
    });
  }
  return {
    mode,
    date: new Date().toISOString(),
    runs,
    target: targetRoot,
    concurrency: knobs.concurrency,
    batchSize: knobs.batchSize,
    sets: out,
  };
}

export function renderOffload(r: OffloadResult | undefined): string {
  const out = ["## 2. Offloading to a folder: image-agent, rclone, rsync", ""];
  if (!r) {
    out.push("Not run yet: `deno task bench --only offload`.", "");
    return out.join("\n");
  }
  out.push(
    `Mode: **${r.mode}**, ${
      r.date.slice(0, 16).replace("T", " ")
    } UTC, median of ${r.runs} runs per tool. Source: hard-linked trees of generated files on the root disk (ext4, page cache warm); target: \`${r.target}\` (tmpfs, another file system). image-agent runs with \`backup.concurrency = ${r.concurrency}\`, \`cleanup.batchSize = ${r.batchSize}\`, \`--quiet\`. Peers: \`rclone move --checksum\` (defaults: 4 transfers) and \`rsync -a --remove-source-files --checksum\`. MB/s are decimal megabytes of image data per wall-clock second, process start included.`,
    "",
  );
  for (const s of r.sets) {
    const bytes = s.set.files * s.set.size;
    const agentT = s.tools["image-agent"];
    const rclone = s.tools["rclone"];
    out.push(
      `### ${fmtCount(s.set.files)} files of ${fmtSize(s.set.size)} (${
        fmtSize(bytes)
      })`,
      "",
      "| tool | time | files/s | MB/s | peak RSS | image-agent speed ÷ tool's | target: ≥ rclone |",
      "|---|---:|---:|---:|---:|---:|---|",
    );
    for (const tool of TOOLS) {
      const t = s.tools[tool];
      if (!t) continue;
      const ratio = t.seconds / agentT.seconds;
      const verdict = tool !== "image-agent"
        ? ""
        : !rclone
        ? "n/a"
        : agentT.seconds <= rclone.seconds
        ? `met (${fmtRatio(rclone.seconds / agentT.seconds)} rclone)`
        : `**missed** (${fmtRatio(rclone.seconds / agentT.seconds)} rclone)`;
      out.push(
        `| ${tool} | ${fmtSeconds(t.seconds)} | ${
          fmtCount(Math.round(s.set.files / t.seconds))
        } | ${mbPerSec(bytes, t.seconds).toFixed(0)} | ${fmtMiB(t.peakRss)} | ${
          tool === "image-agent" ? "1.00×" : fmtRatio(ratio)
        } | ${verdict} |`,
      );
    }
    out.push("");
  }
  return out.join("\n");
}
